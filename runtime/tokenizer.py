"""CLIP BPE tokenizer in pure Python + numpy, token-for-token equal to `open_clip.tokenize`.

open_clip cleans text with ftfy; the runtime does not depend on ftfy, so `clean_text` reproduces
ftfy's deterministic fixes (HTML entities, C1 controls, Latin ligatures, character width, curly
quotes, line breaks, surrogates, terminal escapes, control characters, NFC) with the standard library.
Not reproduced: ftfy's heuristic mojibake repair (e.g. "cafÃ©" -> "café"); such text is tokenized
as written. The word pattern needs Unicode property classes (\\p{L}, \\p{N}), hence `regex`.
"""

from __future__ import annotations

import gzip
import html
import html.entities
import itertools
import re as stdre
import unicodedata
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import regex

from clipsr_runtime.notices import ClipsrWarning

_SPECIAL = ("<start_of_text>", "<end_of_text>")
_WORD_RE = regex.compile(
    "|".join(_SPECIAL) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


@lru_cache(maxsize=1)
def _byte_to_unicode() -> dict[int, str]:
    """Reversible byte -> printable character map of CLIP's byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, map(chr, cs)))


# --- ftfy's deterministic fixers, rebuilt from the standard library -------------------------------

def _html_entities() -> dict[str, str]:
    """ftfy decodes entities ending in ';', plus all-caps forms of lower-case ones."""
    table = {}
    for name, char in html.entities.html5.items():
        if name.endswith(";"):
            table["&" + name] = char
            upper = "&" + name.upper()
            if name == name.lower() and html.unescape(upper) == upper:
                table[upper] = char.upper()
    return table


_ENTITIES = _html_entities()
_ENTITY_RE = stdre.compile(r"&#?[0-9A-Za-z]{1,24};")
_C1_RE = stdre.compile(r"[\x80-\x9f]")
_ANSI_RE = stdre.compile("\033\\[((?:\\d|;)*)([a-zA-Z])")
_SURROGATE_RE = stdre.compile("[\ud800-\udfff]")
_SURROGATE_PAIR_RE = stdre.compile("[\ud800-\udbff][\udc00-\udfff]")
_SINGLE_QUOTE_RE = stdre.compile("[\u02bc\u2018-\u201b]")
_DOUBLE_QUOTE_RE = stdre.compile("[\u201c-\u201f]")
_LIGATURES = str.maketrans({
    "Ĳ": "IJ", "ĳ": "ij", "ŉ": "ʼn", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǆ": "DŽ", "ǅ": "Dž", "ǆ": "dž",
    "Ǉ": "LJ", "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj",
    "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "ſt", "ﬆ": "st",
})
_WIDTH = {0x3000: " "} | {
    i: unicodedata.normalize("NFKC", chr(i)) for i in range(0xFF01, 0xFFF0)
    if unicodedata.normalize("NFKC", chr(i)) != chr(i)
}
_CONTROL = dict.fromkeys(itertools.chain(
    range(0x00, 0x09), [0x0B], range(0x0E, 0x20), [0x7F], range(0x206A, 0x2070), [0xFEFF],
    range(0xFFF9, 0xFFFD)))


def _entity(match: stdre.Match[str]) -> str:
    text = match.group(0)
    if text in _ENTITIES:
        return _ENTITIES[text]
    if text.startswith("&#"):
        decoded = html.unescape(text)
        return text if ";" in decoded else decoded
    return text


def _c1(match: stdre.Match[str]) -> str:
    """C1 controls read as Windows-1252 (bytes cp1252 leaves undefined stay Latin-1)."""
    byte = match.group(0).encode("latin-1")
    try:
        return byte.decode("cp1252")
    except UnicodeDecodeError:
        return match.group(0)


def _surrogate_pair(match: stdre.Match[str]) -> str:
    hi, lo = map(ord, match.group(0))
    return chr(0x10000 + (hi - 0xD800) * 0x400 + (lo - 0xDC00))


def _fix_segment(text: str, unescape: bool) -> str:
    while True:
        before = text
        if unescape:
            text = _ENTITY_RE.sub(_entity, text)
        text = _C1_RE.sub(_c1, text)
        text = text.translate(_LIGATURES).translate(_WIDTH)
        text = _SINGLE_QUOTE_RE.sub("'", _DOUBLE_QUOTE_RE.sub('"', text))
        for old in ("\r\n", "\r", "\u2028", "\u2029", "\u0085"):
            text = text.replace(old, "\n")
        if _SURROGATE_RE.search(text):
            text = _SURROGATE_RE.sub("\ufffd", _SURROGATE_PAIR_RE.sub(_surrogate_pair, text))
        text = _ANSI_RE.sub("", text).translate(_CONTROL)
        text = unicodedata.normalize("NFC", text)
        if text == before:
            return text


def clean_text(text: str) -> str:
    """open_clip's 'lower' cleaning: ftfy fixes per line, HTML unescape twice, whitespace, lower case."""
    out, unescape = [], True
    for line in stdre.findall(r"[^\n]*\n|[^\n]+", text):
        unescape = unescape and "<" not in line  # ftfy stops unescaping once a segment has '<'
        out.append(_fix_segment(line, unescape))
    text = html.unescape(html.unescape("".join(out))).strip()
    return " ".join(text.split()).lower()


class Tokenizer:
    """Reads open_clip's `bpe_simple_vocab_16e6.txt.gz` and encodes prompts to (77,) int32 tokens."""

    def __init__(self, vocab_path: str | Path, context_length: int = 77,
                 sot_token: int | None = None, eot_token: int | None = None) -> None:
        path = Path(vocab_path)
        try:
            lines = gzip.open(path).read().decode("utf-8").split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read tokenizer vocabulary {path}: {exc}") from exc
        merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
        if len(merges) != 49152 - 256 - 2 or any(len(m) != 2 for m in merges):
            raise ValueError(f"tokenizer vocabulary {path} is not a CLIP BPE merge list")
        self._bytes = _byte_to_unicode()
        vocab = list(self._bytes.values())
        vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + list(_SPECIAL)
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot = self.encoder[_SPECIAL[0]]
        self.eot = self.encoder[_SPECIAL[1]]
        if (sot_token, eot_token) not in ((None, None), (self.sot, self.eot)):
            raise ValueError(f"tokenizer vocabulary {path} gives sot/eot {self.sot}/{self.eot}, "
                             f"the manifest says {sot_token}/{eot_token}")
        self.context_length = context_length
        self._cache: dict[str, list[str]] = {t: [t] for t in _SPECIAL}

    def _bpe(self, token: str) -> list[str]:
        if token in self._cache:
            return self._cache[token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = word
        return word

    def encode_ids(self, text: str) -> list[int]:
        """BPE ids of the cleaned text, without start/end tokens."""
        ids = []
        for word in _WORD_RE.findall(clean_text(text)):
            mapped = "".join(self._bytes[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(mapped))
        return ids

    def __call__(self, text: str) -> np.ndarray:
        """(context_length,) int32 tokens: SOT, ids, EOT, zero padding; truncated with a warning."""
        ids = self.encode_ids(text)
        if not ids:
            raise ValueError(f"empty prompt {text!r}: give a caption such as 'a bird with a red crown'")
        tokens = [self.sot, *ids, self.eot]
        if len(tokens) > self.context_length:
            warnings.warn(f"prompt has {len(tokens)} tokens, truncated to {self.context_length}: "
                          f"{text[:40]!r}...", ClipsrWarning, stacklevel=2)
            tokens = tokens[:self.context_length]
            tokens[-1] = self.eot
        out = np.zeros(self.context_length, dtype=np.int32)
        out[:len(tokens)] = tokens
        return out
