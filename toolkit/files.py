"""Files that are whole or absent: atomic writes (temporary file, then one rename) and file digests."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path`` in one rename.

    A crash or an exception leaves either the old file or none, never a half-written one.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) or ".tmp"  # keep ".jsonl.gz": readers pick the format from it
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 files, and some writers (safetensors) recreate the file: give the usual mode at the end
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


STALE_SECONDS = 3600  # a temporary file untouched this long was left by a killed write, not one in progress


def remove_stale_temporaries(path: Path, suffix: str) -> None:
    """Delete the temporary files that writes of ``path`` killed before their rename (SIGKILL, power loss) left
    beside it; ones touched within ``STALE_SECONDS`` may belong to a write in progress and stay."""
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.[A-Za-z0-9_]{{8}}{re.escape(suffix)}")
    if not path.parent.is_dir():
        return
    now = time.time()
    for candidate in path.parent.glob(f".{path.stem}.*"):
        try:
            if pattern.fullmatch(candidate.name) and now - candidate.stat().st_mtime > STALE_SECONDS:
                candidate.unlink()
        except OSError:  # gone already, or not ours to remove
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256(*paths: PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks; of several files, of their bytes one after the other."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
