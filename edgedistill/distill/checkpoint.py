"""Training checkpoints that load without running code, and the rules for replacing a distill output.

A checkpoint is a directory ``<work>/checkpoints/step-NNNNNNN/`` holding

- ``train_state.pt``: the student's, the optimizer's and the scheduler's state dicts: tensors, numbers,
  strings and lists only, read back with ``torch.load(weights_only=True)``, which refuses any other
  pickled object (a file with an ``os.system`` payload fails to load instead of running it);
- ``rng.json``: every process's RNG states as JSON (torch's byte tensor as base64, Python's state tuple
  and numpy's MT19937 key as lists of integers);
- ``meta.json``: the step and the run's settings (compared on resume).

Checkpoints written by edgedistill before this format (one pickled ``state.pt``) are never loaded.
When the newest checkpoint does not load (truncated by a full disk, corrupt), resuming falls back to
the newest one that does and says so.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from edgedistill.atomic import atomic_dir, atomic_write_json
from edgedistill.errors import EdgeDistillError

STATE_FILE, RNG_FILE, META_FILE = "train_state.pt", "rng.json", "meta.json"
LEGACY_FILE = "state.pt"  # the pickled format of earlier versions: recognised, never unpickled
CHECKPOINT_MARKERS = (META_FILE, STATE_FILE, LEGACY_FILE)
DISTILL_MARKERS = ("distill_summary.json", "distill_config.json")  # what a distill output holds


# --- RNG state <-> JSON ----------------------------------------------------------------------------


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state_json() -> dict[str, Any]:
    """This process's torch / CUDA / Python / numpy RNG states in a JSON-serialisable form."""
    import numpy as np

    version, internal, gauss = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": _b64(torch.get_rng_state()), "python": [version, list(internal), gauss],
             "numpy": [name, [int(x) for x in key], int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state_json(state: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(_unb64(state["torch"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


# --- save / load -----------------------------------------------------------------------------------


def save_checkpoint_dir(final: Path, step: int, config: dict, tensors: dict[str, Any], rngs: list[dict]) -> None:
    """Write one checkpoint atomically; ``tensors`` = {"model", "optimizer", "scheduler"} state dicts."""
    with atomic_dir(final, overwrite=True, made_by=CHECKPOINT_MARKERS) as tmp:
        torch.save(tensors, tmp / STATE_FILE)
        atomic_write_json(tmp / RNG_FILE, rngs)
        atomic_write_json(tmp / META_FILE, {"format": 2, "step": step, "config": config})


def _load_one(ckpt: Path) -> dict[str, Any]:
    if not (ckpt / META_FILE).exists() and (ckpt / LEGACY_FILE).exists():
        raise ValueError(f"written by an older edgedistill as a pickle ({LEGACY_FILE}), which is never loaded "
                         "because unpickling can run code")
    meta = json.loads((ckpt / META_FILE).read_text())
    rngs = json.loads((ckpt / RNG_FILE).read_text())
    # weights_only: tensors and plain containers only; any other pickled object is refused, not run
    tensors = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    if not isinstance(tensors, dict) or not {"model", "optimizer", "scheduler"} <= set(tensors):
        raise ValueError(f"{STATE_FILE} lacks the model / optimizer / scheduler state")
    if not isinstance(rngs, list) or not rngs:
        raise ValueError(f"{RNG_FILE} holds no RNG state")
    return {**tensors, "rng": rngs, "step": int(meta["step"]), "config": meta.get("config", {})}


def list_checkpoints(work: Path) -> list[Path]:
    """Checkpoint directories, oldest first."""
    return sorted(p for p in (work / "checkpoints").glob("step-*") if p.is_dir())


def load_newest_checkpoint(work: Path, note: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that loads and its state; older ones are tried when a newer one is damaged."""
    tried = []
    for ckpt in reversed(list_checkpoints(work)):
        try:
            state = _load_one(ckpt)
        except Exception as exc:  # noqa: BLE001 - truncated zip, bad JSON, refused pickle: all "does not load"
            first = str(exc).splitlines()[0].split(". ")[0] if str(exc) else ""  # torch's are paragraphs
            reason = f"{type(exc).__name__}: {first}"[:200]
            tried.append(f"{ckpt.name} ({reason})")
            if note:
                note(f"note: checkpoint {ckpt} does not load ({reason}); trying the previous one")
            continue
        if tried and note:
            note(f"note: resuming from {ckpt.name}, the newest checkpoint that loads")
        return ckpt, state
    raise EdgeDistillError(
        f"no checkpoint in {work / 'checkpoints'} loads: {'; '.join(tried) or 'there are none'}",
        hint="rerun without --resume to start over",
    )


def remove_checkpoints(work: Path) -> None:
    """Delete this run's checkpoints; anything else found under ``checkpoints/`` is left alone."""
    for ckpt in list_checkpoints(work):
        if any((ckpt / m).exists() for m in CHECKPOINT_MARKERS):
            shutil.rmtree(ckpt, ignore_errors=True)
    try:
        (work / "checkpoints").rmdir()  # only when nothing else is in it
    except OSError:
        pass


# --- replacing --out ---------------------------------------------------------------------------------


def is_same_run(out: Path, config: dict, may_change: set[str]) -> bool:
    """Whether ``out`` is the finished output of a run with these settings (then rerunning replaces it)."""
    try:
        before = json.loads((out / "distill_config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(before, dict):
        return False
    config = json.loads(json.dumps(config, default=str))  # tuples -> lists, as they were written
    keys = (set(before) | set(config)) - may_change
    return all(before.get(k) == config.get(k) for k in keys)
