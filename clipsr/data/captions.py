"""Caption and split-list readers shared by the loaders, with errors that name the offending file."""
from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path


def read_caption_file(path: Path) -> tuple[str, ...]:
    """Non-empty stripped lines of a caption text file; a missing or empty file is an error."""
    if not path.is_file():
        raise FileNotFoundError(f"caption file not found: {path}")
    lines = tuple(line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    captions = tuple(line for line in lines if line)
    if not captions:
        raise ValueError(f"caption file is empty: {path}")
    return captions


class _PlainUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers/strings/numbers: any class lookup is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_name_pickle(path: Path) -> list[str]:
    """A DF-GAN style `filenames.pickle` (a list of str, possibly Python 2 bytes), loaded safely."""
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}")
    data = path.read_bytes()
    try:
        for _ in pickletools.genops(data):  # a length that claims more bytes than the file holds fails
            pass                            # here, before the unpickler would allocate it
        names = _PlainUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, MemoryError) as error:
        raise ValueError(f"{path} is not a plain pickled list of names: {error}") from error
    if not isinstance(names, (list, tuple)):
        raise ValueError(f"{path} holds a {type(names).__name__}, expected a list of names")
    names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path} holds non-string entries, expected a list of names")
    if not names:
        raise ValueError(f"split list is empty: {path}")
    return names


def read_name_list(path: Path) -> list[str]:
    """A split list as text (one name per line) or as a DF-GAN pickle, chosen by the suffix."""
    if path.suffix == ".pickle":
        return read_name_pickle(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"split list is empty: {path}")
    return names
