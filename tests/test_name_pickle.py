"""DF-GAN split pickles are read safely: a length field that claims more data than the file holds is a
clear refusal naming the file, not a huge allocation or a bare MemoryError."""

from __future__ import annotations

import pickle
import struct

import pytest

from clipsr.data.captions import read_name_pickle


@pytest.mark.parametrize("opcode, length", [
    (pickle.BINBYTES8, struct.pack("<Q", 1 << 40)),     # 1 TiB of bytes
    (pickle.BINUNICODE8, struct.pack("<Q", 1 << 40)),   # 1 TiB of text
    (pickle.BYTEARRAY8, struct.pack("<Q", 1 << 40)),
    (pickle.BINBYTES, struct.pack("<I", (1 << 32) - 1)),  # 4 GiB
    (pickle.BINUNICODE, struct.pack("<I", (1 << 32) - 1)),
])
def test_oversized_length_claims_are_refused(tmp_path, opcode, length):
    path = tmp_path / "filenames.pickle"
    path.write_bytes(pickle.PROTO + b"\x05" + opcode + length + b"abc" + pickle.STOP)
    with pytest.raises(ValueError, match=r"filenames\.pickle is not a plain pickled list of names: expected"):
        read_name_pickle(path)


def test_a_plain_list_still_loads(tmp_path):
    path = tmp_path / "filenames.pickle"
    path.write_bytes(pickle.dumps(["001.Black_footed_Albatross/a", b"002.b"], protocol=4))
    assert read_name_pickle(path) == ["001.Black_footed_Albatross/a", "002.b"]
