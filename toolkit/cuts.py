"""Opening training data without reading a corpus into memory: Lhotse manifests lazily, Lhotse Shar shards per rank.

A ``.jsonl(.gz)`` manifest opens as a lazy ``CutSet``: cuts are read as they are iterated, so memory does not grow
with the corpus; the samplers (Lhotse's dynamic samplers, which stream with a shuffle buffer) split the batches among
the ranks. A Shar directory (``cuts.000000.jsonl.gz`` + ``codes.000000.tar`` ..., written by the data pipeline's
``--shar``) opens as the shards of this rank alone: rank r of n reads shards r, r + n, ..., so that every process
reads its own part of the corpus, and its sampler does not split again (``Opened.per_rank``).
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List

from toolkit.errors import InputError

SHAR_CUTS = re.compile(r"cuts\.(\d{6})\.jsonl(\.gz)?$")


@dataclass
class Opened:
    """Cuts to train on and whether they are this rank's share already (``per_rank``: the sampler must not split
    them again)."""

    cuts: object
    per_rank: bool = False
    shards: int = 0


def shar_shards(directory: Path) -> List[int]:
    return sorted(int(m.group(1)) for p in Path(directory).iterdir() if (m := SHAR_CUTS.match(p.name)))


def open_cuts(path: os.PathLike, rank: int = 0, world_size: int = 1) -> Opened:
    """A manifest (lazily) or a Shar directory (this rank's shards); an ``InputError`` with one line when ``path`` is
    neither, or when a Shar directory has fewer shards than there are ranks."""
    from lhotse import CutSet

    path = Path(path)
    if path.is_dir():
        shards = shar_shards(path)
        if not shards:
            raise InputError(f"{path} is a directory without Shar shards (cuts.000000.jsonl.gz ...)")
        if len(shards) < world_size:
            raise InputError(f"{path} has {len(shards)} Shar shards for {world_size} processes: write at least one "
                             f"per process (a smaller shard size)")
        mine = shards[rank::world_size]
        fields = {}
        for name in sorted({p.name.split(".")[0] for p in path.iterdir() if p.name.endswith(".tar")} | {"cuts"}):
            files = []
            for index in mine:
                found = sorted(path.glob(f"{name}.{index:06d}.*"))
                if not found:
                    raise InputError(f"{path}: shard {index} has no {name} file")
                files.append(str(found[0]))
            fields[name] = files
        return Opened(CutSet.from_shar(fields=fields), per_rank=True, shards=len(mine))
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return Opened(CutSet.from_jsonl_lazy(path))
    return Opened(CutSet.from_file(path))


def beside(path: os.PathLike, name: str) -> Path:
    """The file ``name`` beside a manifest, or for a Shar directory (``data/mini/shar/train``) the first found in
    the folders above it (``data/mini/symbols.json``)."""
    path = Path(path)
    candidates = [path.parent / name] + ([path.parent.parent / name, path.parent.parent.parent / name]
                                         if path.is_dir() else [])
    return next((c for c in candidates if c.is_file()), candidates[0])


def speaker_matches(cut, patterns: Iterable[str]) -> bool:
    """Whether the speaker of ``cut``'s first supervision ("" when none) matches any of the shell-style ``patterns``
    (case-sensitive, e.g. ``espeak*``): the ``--except-speakers`` option of the recipes."""
    speaker = (cut.supervisions[0].speaker if cut.supervisions else "") or ""
    return any(fnmatch.fnmatchcase(speaker, pattern) for pattern in patterns)
