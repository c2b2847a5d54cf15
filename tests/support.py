"""Helpers shared by several test modules (fixtures live in the conftest files)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

from lhotse import CutSet

from tts.text import SymbolTable


def corpus_data(built):
    """(training cuts, symbol table, tiny codec directory) of the smoke corpus fixture ``built``."""
    root, config, _ = built
    cuts = CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz").to_eager()
    return cuts, SymbolTable.load(config.work_dir / "symbols.json"), root / "codec"


def weights(trainer):
    """A copy of a trainer's model weights."""
    return {k: v.detach().clone() for k, v in trainer.unwrapped.state_dict().items()}


ROOT = Path(__file__).resolve().parents[1]
DOC_PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def snippets(lang: str) -> List[str]:
    """Every fenced ``lang`` block of README.md and docs/*.md."""
    return [block for page in DOC_PAGES
            for block in re.findall(rf"```{lang}\n(.*?)```", page.read_text(), flags=re.S)]


def snippet(lang: str, *contains: str) -> str:
    """The one fenced ``lang`` block of README.md or docs/*.md that holds every string of ``contains``."""
    found = [b for b in snippets(lang) if all(c in b for c in contains)]
    assert len(found) == 1, f"{len(found)} {lang} blocks hold {contains}"
    return found[0]
