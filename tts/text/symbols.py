"""The versioned symbol table saved next to every model: phoneme tokens <-> ids."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Union

from toolkit.files import atomic_path

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
FORMAT_VERSION = 1
FILE_NAME = "symbols.json"


class UnknownSymbolError(ValueError):
    """Tokens the table does not know; the message names them."""


@dataclass
class SymbolTable:
    """Attributes:
        symbols: every token, specials first (``<pad>`` = 0).
        frontend: the phonemizer that made the tokens, e.g. ``espeak:en-us``.
        frontend_version: its backend version when the table was built.
    """

    symbols: List[str]
    frontend: str
    frontend_version: str = ""
    version: int = FORMAT_VERSION
    _ids: Dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbol table has duplicate symbols")
        if tuple(self.symbols[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"symbol table must start with {SPECIALS}")
        self._ids = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], frontend: str, frontend_version: str = "") -> "SymbolTable":
        found = sorted({t for tokens in token_lists for t in tokens} - set(SPECIALS))
        return cls(list(SPECIALS) + found, frontend, frontend_version)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    def unknown(self, tokens: Sequence[str]) -> List[str]:
        return sorted({t for t in tokens if t not in self._ids})

    def encode(self, tokens: Sequence[str]) -> List[int]:
        missing = self.unknown(tokens)
        if missing:
            raise UnknownSymbolError(f"symbol(s) not in the model's symbol table ({self.frontend}): "
                                     f"{' '.join(repr(m) for m in missing[:10])}")
        return [self._ids[t] for t in tokens]

    def decode(self, ids: Sequence[int]) -> List[str]:
        return [self.symbols[i] for i in ids]

    def save(self, path: Union[str, os.PathLike]) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        data = {"version": self.version, "frontend": self.frontend, "frontend_version": self.frontend_version,
                "symbols": self.symbols}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "SymbolTable":
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"expected an object with symbols and frontend, got a {type(data).__name__}")
            if not isinstance(data["symbols"], list) or not all(isinstance(x, str) for x in data["symbols"]):
                raise ValueError("symbols must be a list of strings")
            if len(set(data["symbols"])) != len(data["symbols"]):
                raise ValueError("symbols has duplicates")
            if data.get("version", 0) > FORMAT_VERSION:
                raise ValueError(f"format version {data['version']} is newer than {FORMAT_VERSION}")
            return cls(list(data["symbols"]), data["frontend"], data.get("frontend_version", ""),
                       int(data.get("version", FORMAT_VERSION)))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"cannot read symbol table {path}: {err}") from None
