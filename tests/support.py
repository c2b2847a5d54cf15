"""Helpers shared by several test modules (fixtures live in the conftest files)."""

from __future__ import annotations

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
