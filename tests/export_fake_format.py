"""A stand-in export format for the orchestrator's tests: it writes a Hugging Face directory that the
torch runtime loads (format name "hf"), so run/verify/manifest logic is tested without the real
converters. Quant types choose its behaviour:

- ``exact``: copy the model; verification must pass with ~0 differences.
- ``noisy``: add Gaussian noise to every weight; must fail ``exact``-style thresholds.
- ``slow``: copy, then touch ``$EXPORT_FAKE_READY`` and sleep (for the kill -9 test).
- ``nospace``: write a file, then fail with ENOSPC as a full disk would.
- ``unloadable``: weights the runtime cannot read (verification must fail, not crash).
- ``lossy``: noisy weights under thresholds that always pass: only a task check can reject it.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

from edgedistill.export.formats import ExportFormat, QuantSpec

_STRICT = dict(max_kl=1e-6, min_greedy_match=1.0, max_abs_logit_diff=1e-3)


class FakeHFFormat(ExportFormat):
    name = "hf"
    supported_architectures = ("llama", "qwen2")
    quants = {
        "exact": QuantSpec("exact", 32, **_STRICT),
        "noisy": QuantSpec("noisy", 32, **_STRICT),
        "slow": QuantSpec("slow", 32, **_STRICT),
        "nospace": QuantSpec("nospace", 32, **_STRICT),
        "q4": QuantSpec("q4", 4.5, max_kl=0.1, min_greedy_match=0.5),
        "unloadable": QuantSpec("unloadable", 32, **_STRICT),
        "lossy": QuantSpec("lossy", 4.0, max_kl=float("inf"), min_greedy_match=0.0),
    }

    def __init__(self):
        self.calls = []

    def kv_cache_dtype(self, quant):
        from edgedistill.runtime_registry import RUNTIMES

        return RUNTIMES.get("torch").kv_cache_dtype(quant)  # the torch runtime's cache, as for the real HF baseline

    def write(self, model_dir, out_dir, quant, options):
        self.calls.append((Path(model_dir), quant))
        for f in Path(model_dir).iterdir():
            if f.is_file():
                shutil.copy2(f, out_dir / f.name)
        if quant in ("noisy", "lossy"):
            import torch
            from safetensors.torch import load_file, save_file

            state = load_file(out_dir / "model.safetensors")
            gen = torch.Generator().manual_seed(0)
            state = {k: v + 0.5 * torch.randn(v.shape, generator=gen) for k, v in state.items()}
            save_file(state, out_dir / "model.safetensors", metadata={"format": "pt"})
        elif quant == "unloadable":  # passes the writer, but the runtime cannot read the weights
            (out_dir / "model.safetensors").write_bytes(b"\0" * 64)
        elif quant == "slow":
            Path(os.environ["EXPORT_FAKE_READY"]).write_text("writing")
            time.sleep(600)
        elif quant == "nospace":
            raise OSError(errno.ENOSPC, "No space left on device")
        return {"fake": True, "tool_versions": {"fake-exporter": "1.0"}}

    def describe(self, artifact_dir):
        return {"files": sorted(p.name for p in Path(artifact_dir).iterdir())}


def install(monkeypatch=None) -> FakeHFFormat:
    """Register a fresh fake under "hf" (through monkeypatch in tests, so it is removed afterwards)."""
    from edgedistill.export.formats import FORMATS

    fake = FakeHFFormat()
    if monkeypatch is not None:
        monkeypatch.setitem(FORMATS._items, "hf", fake)
    else:
        FORMATS._items["hf"] = fake
    return fake
