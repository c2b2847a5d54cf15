"""What every training loop of the project shares (the codec's GAN loop and the token models' loop).

- ``CheckpointStore``: Accelerate's ``save_state`` plus the loop's own JSON state (step, sampler position, schedulers)
  in a temporary folder renamed when complete; the last N are kept; ``load`` restores both.
- ``warmup_cosine``: the learning-rate factor of both loops; ``warmup_stable_decay`` the token models' alternative.
- ``agree_finite``: every rank learns whether any rank saw a non-finite loss, so all skip the same update.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path
from typing import Callable, List, Optional

import torch

from toolkit.files import sha256


class NonFiniteLossError(RuntimeError):
    pass


def warmup_cosine(max_steps: int, warmup: int, min_ratio: float = 0.0):
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` of the peak at ``max_steps``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def warmup_stable_decay(max_steps: int, warmup: int, decay_steps: int, min_ratio: float = 0.0):
    """Linear warm-up over ``warmup`` steps, the peak held, then a linear decay to ``min_ratio`` of it over the last
    ``decay_steps`` steps before ``max_steps`` (the warmup-stable-decay schedule of MiniCPM's report, with a linear
    decay). Until its decay starts the rate does not depend on ``max_steps``, so a run's checkpoint can be continued
    with a decay at any step."""
    start = max_steps - decay_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step < start:
            return 1.0
        return 1.0 - (1.0 - min_ratio) * min(1.0, (step - start + 1) / max(1, decay_steps))
    return factor


def agree_finite(accelerator, loss: torch.Tensor) -> bool:
    """True when ``loss`` is finite on every rank (a collective: every rank must call it)."""
    bad = torch.tensor(0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0, device=accelerator.device)
    return float(accelerator.reduce(bad, reduction="sum")) == 0.0


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored (missing, incomplete or corrupt); the message names the file."""


MANIFEST = "MANIFEST.json"


class CheckpointStore:
    """``<out>/checkpoints/step-XXXXXXXX/``: Accelerate's state and ``trainer_state_<rank>.json`` per rank.

    Each checkpoint is written in a temporary folder, then ``MANIFEST.json`` (every file's size and SHA-256) is written
    last, then the folder is renamed. ``load`` checks the manifest before restoring anything: when the latest
    checkpoint is incomplete or corrupt it says which file and falls back to the newest complete one, and it never
    restores state it could not verify. Checkpoints of earlier versions (no manifest) load when their files are
    there. Temporary folders left by a killed write are removed when the store is opened.
    """

    def __init__(self, accelerator, out_dir: os.PathLike, keep: int):
        self.acc = accelerator
        self.dir = Path(out_dir) / "checkpoints"
        self.keep = keep
        if self.acc.is_main_process and self.dir.is_dir():
            for tmp in self.dir.glob(".step-*.tmp"):
                shutil.rmtree(tmp, ignore_errors=True)
        self.acc.wait_for_everyone()

    def list(self) -> List[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("step-*") if p.is_dir())

    def save(self, step: int, state: dict) -> Path:
        """Every rank calls it; ``state`` (JSON-serializable) is this rank's own loop state."""
        name = f"step-{step:08d}"
        final, tmp = self.dir / name, self.dir / f".{name}.tmp"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp))
        (tmp / f"trainer_state_{self.acc.process_index}.json").write_text(json.dumps(state))
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            write_manifest(tmp, ranks=self.acc.num_processes)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in self.list()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()
        return final

    def load(self, checkpoint: Optional[os.PathLike] = None) -> Optional[dict]:
        """Restore Accelerate's state from ``checkpoint`` (default: the newest complete one) and return this rank's
        loop state; None when there is no checkpoint. A named checkpoint that fails its check raises
        ``CheckpointError``; without a name, failing ones are reported and skipped for an older one."""
        if checkpoint is not None:
            candidates = [Path(checkpoint)]
        else:
            candidates = self.list()[::-1]
            if not candidates:
                return None
        problems = []
        for path in candidates:
            problem = verify_checkpoint(path, self.acc.process_index, self.acc.num_processes)
            if problem is None:
                if problems:
                    self.acc.print(f"resuming from {path.name} instead: " + "; ".join(problems))
                self.acc.load_state(str(path))
                return json.loads((path / f"trainer_state_{self.acc.process_index}.json").read_text())
            problems.append(f"{path.name} is unusable ({problem})")
            if checkpoint is None:
                self.acc.print(f"warning: checkpoint {problems[-1]}")
        raise CheckpointError("; ".join(problems) + ". Nothing was restored: remove or repair the checkpoint(s), "
                              "or start without --resume")


def write_manifest(folder: Path, ranks: int) -> None:
    """``MANIFEST.json``: the size and SHA-256 of every other file in ``folder`` (recursively), and the rank count."""
    files = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"format": 1, "ranks": ranks, "files": files}, indent=1))
    os.replace(tmp, folder / MANIFEST)


def verify_checkpoint(folder: Path, rank: int, ranks: int) -> Optional[str]:
    """None when ``folder`` is a complete checkpoint for ``rank`` of ``ranks``, else what is wrong with it."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    manifest = folder / MANIFEST
    if not manifest.is_file():  # written before manifests existed: the files every checkpoint has must be there
        for name in ("model.safetensors", "optimizer.bin", f"random_states_{rank}.pkl", f"trainer_state_{rank}.json"):
            if not (folder / name).is_file():
                return f"{name} is missing"
        return None
    try:
        data = json.loads(manifest.read_text())
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    if data.get("ranks", ranks) != ranks:
        return f"it was written by {data['ranks']} process(es) and this run has {ranks}"
    for name, meta in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != meta["size"]:
            return f"{name} has {path.stat().st_size} bytes, {meta['size']} were written"
        if sha256(path) != meta["sha256"]:
            return f"{name} is corrupt (its SHA-256 differs from the one written)"
    if f"trainer_state_{rank}.json" not in files:
        return f"trainer_state_{rank}.json is missing"
    return None


class MetricsLog:
    """``<out>/metrics.jsonl``: one JSON line per logged step, beside whatever trackers a run has, so a learning
    curve can be read back without a tracker's tools. Written by the main process; a resumed run appends (a step
    logged before an interruption and again after the resume has two lines; the later one counts)."""

    NAME = "metrics.jsonl"

    def __init__(self, out_dir: os.PathLike, enabled: bool = True):
        self.path = Path(out_dir) / self.NAME
        self.enabled = enabled

    def write(self, values: dict, step: int) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")


# Command-line entry points ------------------------------------------------------------------------------------------

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class OneLineParser(argparse.ArgumentParser):
    """argparse with a bad command line answered in one line (``PROG: error: ...``) and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def run_cli(main: Callable[[], Optional[int]], prog: Optional[str] = None) -> None:
    """Run a recipe's ``main`` under the project's exit policy: 0 done (or what ``main`` returns); 1, with one line on
    stderr, for input it cannot use (a bad config, a missing or unreadable file, a checkpoint that cannot be restored,
    a run stopped by non-finite losses); 130 on Ctrl-C. ``LCTTS_DEBUG=1`` shows the traceback instead."""
    import sys

    prog = prog or Path(sys.argv[0]).name
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except (ValueError, OSError, CheckpointError, NonFiniteLossError) as err:
        if os.environ.get("LCTTS_DEBUG"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    sys.exit(code or 0)


# Config checks ---------------------------------------------------------------------------------------------------

FIELD_KINDS = {
    "positive int": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "int >= 0": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "positive number": lambda v: _real(v) and v > 0,
    "number >= 0": lambda v: _real(v) and v >= 0,
    "number in [0, 1]": lambda v: _real(v) and 0 <= v <= 1,
}


# The fields both training loops have, by kind (each loop's config adds its own).
LOOP_FIELDS = {
    "learning_rate": "positive number", "weight_decay": "number >= 0", "max_steps": "positive int",
    "grad_clip": "number >= 0", "mixed_precision": ("no", "fp16", "bf16"), "log_every": "positive int",
    "checkpoint_every": "positive int", "keep_checkpoints": "positive int", "validate_every": "positive int",
    "max_nonfinite": "int >= 0", "num_workers": "int >= 0", "seed": "int >= 0", "fused_optimizer": (False, True),
}


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_fields(config, kinds: dict, where: str = "train") -> None:
    """Raise ``ValueError`` naming ``<where>.<field>`` when a field of the dataclass ``config`` is not of its kind
    (``kinds``: field -> a key of ``FIELD_KINDS``, or a tuple of allowed values)."""
    for name, kind in kinds.items():
        value = getattr(config, name)
        ok = value in kind if isinstance(kind, tuple) else FIELD_KINDS[kind](value)
        if not ok:
            wanted = f"one of {', '.join(map(repr, kind))}" if isinstance(kind, tuple) else f"a {kind}"
            raise ValueError(f"{where}.{name} must be {wanted}, got {value!r}")
    if not hasattr(config, "betas"):
        return
    betas = config.betas
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_real(b) and 0 <= b < 1 for b in betas)):
        raise ValueError(f"{where}.betas must be two numbers in [0, 1), got {betas!r}")


def sampler_state(state: dict) -> dict:
    """A Lhotse sampler state read back from JSON (which made the epoch keys of its diagnostics strings)."""
    stats = state.get("diagnostics", {}).get("stats_per_epoch")
    if stats:
        state["diagnostics"]["stats_per_epoch"] = {int(k): v for k, v in stats.items()}
    return state


def endless(loader, sampler):
    """Batches of ``loader`` epoch after epoch; the Lhotse ``sampler``'s epoch advances (reshuffling) at each end.

    Two epochs in a row without a batch (the first may be the empty rest of an epoch a resumed run had finished) mean
    the data cannot fill one batch: a ``ValueError`` says so instead of looping forever.
    """
    empty = 0
    while True:
        batches = 0
        for batch in loader:
            batches += 1
            yield batch
        empty = 0 if batches else empty + 1
        if empty >= 2:
            raise ValueError("the training data fills no batch (fewer or shorter cuts than one batch needs, or every "
                             "cut filtered out): add data or lower the batch size / max_duration")
        sampler.set_epoch(sampler.epoch + 1)


def flat(d: dict, prefix: str = "") -> dict:
    """A nested config as ``a.b.c: scalar`` (what experiment trackers take)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out
