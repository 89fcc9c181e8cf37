#!/usr/bin/env python3
"""Gather the wheels the GPU check needs on the lent GPU machine, into an ignored folder.

The GPU machine (see docs/distill.md, "On GPUs") has no network. Its Python image already holds torch
and most of what edgedistill uses (IMAGE below). This script works out which of the project's runtime
dependencies (pyproject.toml, plus the extras the check uses: ``bench`` = TRL) the image lacks, or has
at a version the project's bounds reject, and the dependencies of those that the image cannot satisfy
either, and downloads exactly those as Python 3.12 / manylinux x86-64 wheels:

    python scripts/gather_gpu_wheels.py                 # -> .gpu-wheels/*.whl + .gpu-wheels/plan.json
    python scripts/gather_gpu_wheels.py --dry-run       # print the plan only (still resolves on PyPI)

How: pip's own resolver runs once (``pip install --dry-run --report``, metadata only, for the target
platform) over the missing requirements, with torch pinned to a dependency-free stand-in of the
image's version, so nothing is ever planned around a different torch. From the resolved set, a package
is carried only if something carried needs it and the image cannot serve it. Packages published only
as source are built here into a pure-Python wheel (refused if the build is not ``py3-none-any``).
The folder ends up with one version of each package and must stay under --limit-mib (the working tree
and the carried paths share 64 MiB on the way to the machine).

Nothing here runs on the GPU machine; benchmarks/gpu/run_check.py installs the folder there with
``pip install --no-index --no-deps --target``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent

# The GPU machine's Python image ('cuda' kind nvidia-h200), as /work/.library/device/KINDS.md records it
# (package list read on 2026-11-17; versions from a session's `pip list` in 2026-11). None = present,
# version not recorded. Keep in sync when that page changes; run_check.py re-checks on the machine.
IMAGE_PYTHON = "3.12"
IMAGE: dict[str, str | None] = {
    "torch": "2.11.0", "transformers": "5.17.0", "accelerate": "1.15.0", "huggingface-hub": "1.33.0",
    "numpy": "2.5.2", "onnx": "1.23.1", "onnx-ir": "1.0.0", "onnxruntime": "1.30.0", "onnxscript": "0.7.2",
    "safetensors": "0.8.0", "sentencepiece": "0.2.2", "tokenizers": "0.23.2", "tiktoken": "0.14.0",
    "triton": "3.6.0", "torchvision": "0.26.0", "torchaudio": "2.11.0", "torchmetrics": "1.9.0",
    "sentence-transformers": "6.0.1", "pytorch-lightning": "2.6.6", "jax": "0.11.2", "jaxlib": "0.11.2",
    **dict.fromkeys((
        "absl-py aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs build certifi "
        "charset-normalizer click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core "
        "cuda-pathfinder cycler cython einops execnet filelock flatbuffers fonttools frozenlist fsspec grpcio h11 "
        "h5py hf-xet httpcore httpx humanize hypothesis idna imageio iniconfig jinja2 joblib kiwisolver "
        "lazy-loader lightning lightning-utilities llvmlite lxml markdown markdown-it-py markupsafe matplotlib "
        "mdurl ml-dtypes mpmath msgpack multidict mypy-extensions networkx ninja numba opencv-python-headless "
        "packaging pandas pathspec peft pillow pip pluggy portalocker prometheus-client propcache protobuf "
        "psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pytest pytest-benchmark pytest-cov "
        "pytest-mock pytest-timeout pytest-xdist python-dateutil pyyaml regex requests rich sacrebleu "
        "scikit-learn scipy setuptools shellingham simplejson six sortedcontainers sympy tabulate tensorboard "
        "threadpoolctl tqdm typer typing-extensions typing-inspect urllib3 uvloop werkzeug wheel wrapt xarray "
        "xxhash yarl zipp").split()),
}
NEVER_CARRY = {"torch", "triton"}  # the image's CUDA build stays; a plan that needs another one is an error

MARKER_ENV = {"python_version": IMAGE_PYTHON, "python_full_version": IMAGE_PYTHON + ".3", "os_name": "posix",
              "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}
PLATFORM_ARGS = ["--only-binary", ":all:", "--python-version", IMAGE_PYTHON, "--implementation", "cp",
                 "--abi", "cp312", *[a for n in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                                                 "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                                                 "manylinux1_x86_64") for a in ("--platform", n)]]


class PlanError(RuntimeError):
    """The plan cannot be made (a conflict with the image's torch, a non-pure source package, size)."""


def applies(req: Requirement, extras: set[str] = frozenset()) -> bool:
    """Whether ``req`` applies on the image's Python, given the extras requested of its owner."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**MARKER_ENV, "extra": e}) for e in (extras or {""}))


def image_satisfies(name: str, spec: SpecifierSet) -> bool:
    """The image serves ``name`` under ``spec``: its version is known and allowed, or unknown and the
    bounds are lower bounds only (a 2026-11 image is assumed recent; an upper bound is not trusted)."""
    name = canonicalize_name(name)
    if name not in IMAGE:
        return False
    version = IMAGE[name]
    if version is None:
        return not any(s.operator in ("<", "<=", "==", "===", "~=") for s in spec)  # "!=" drops old releases
    return spec.contains(Version(version), prereleases=True)


def project_requirements(pyproject: Path, extras: list[str]) -> list[Requirement]:
    import tomllib

    project = tomllib.loads(pyproject.read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project.get("optional-dependencies", {}).get(extra, [])
    return [r for r in map(Requirement, texts) if applies(r)]


def missing_from_image(reqs: list[Requirement]) -> list[Requirement]:
    """The project's own requirements that the image lacks or has at a rejected version."""
    return [r for r in reqs if not image_satisfies(r.name, r.specifier)]


# --- resolution ---------------------------------------------------------------------------------------


def _stub_wheel(folder: Path, name: str, version: str) -> None:
    """A dependency-free stand-in for an image package, so the resolver plans around the image's build."""
    dist = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as z:
        z.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: stub\nRoot-Is-Purelib: true\n"
                                                "Tag: py3-none-any\n")
        z.writestr(f"{dist}.dist-info/RECORD", "")


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def build_pure_wheel(requirement: str, into: Path) -> Path:
    """Build a source-only package into a wheel here; it must be pure Python to run on the image."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = _pip("wheel", "--no-deps", "-q", "-w", tmp, requirement)
        built = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(built) != 1:
            raise PlanError(f"could not build a wheel of {requirement}: {proc.stderr.strip()[-400:]}")
        if not built[0].name.endswith("-none-any.whl"):
            raise PlanError(f"{requirement} has no wheel for the image and builds into {built[0].name}, "
                            "which is not pure Python; build it for manylinux x86-64 yourself")
        return Path(shutil.move(str(built[0]), into / built[0].name))


def resolve(reqs: list[Requirement], work: Path) -> list[dict]:
    """pip's resolution of ``reqs`` for the image (metadata only): the report's ``install`` entries."""
    stubs, built = work / "stubs", work / "built"
    stubs.mkdir(exist_ok=True)
    built.mkdir(exist_ok=True)
    for name in NEVER_CARRY:
        _stub_wheel(stubs, name, IMAGE[name] + "+image")
    constraints = work / "constraints.txt"
    constraints.write_text("".join(f"{n}=={IMAGE[n]}\n" for n in sorted(NEVER_CARRY)))
    report = work / "report.json"
    for _ in range(6):  # each round may build one source-only package
        proc = _pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                    "--target", str(work / "target"), "--find-links", str(stubs), "--find-links", str(built),
                    "-c", str(constraints), *PLATFORM_ARGS, *map(str, reqs))
        if proc.returncode == 0:
            return json.loads(report.read_text())["install"]
        m = re.search(r"No matching distribution found for ([^\s(]+)", proc.stderr)
        if not m or any(canonicalize_name(Requirement(m.group(1)).name) == n for n in NEVER_CARRY):
            raise PlanError("pip could not resolve the requirements for the image:\n" + proc.stderr.strip()[-1500:])
        print(f"  {m.group(1)} has no wheel for the image: building it here")
        build_pure_wheel(m.group(1), built)
    raise PlanError("too many source-only packages: " + proc.stderr.strip()[-800:])


def plan_carry(needed: list[Requirement], resolved: list[dict]) -> dict[str, dict]:
    """name -> {version, why, url}: the needed packages and every dependency of a carried package that
    the image cannot serve under the constraints of everything carried."""
    nodes = {canonicalize_name(e["metadata"]["name"]): e for e in resolved}
    constraints: dict[str, SpecifierSet] = {}
    why: dict[str, set[str]] = {}

    def need(req: Requirement, by: str) -> None:
        n = canonicalize_name(req.name)
        constraints[n] = constraints.get(n, SpecifierSet()) & req.specifier
        why.setdefault(n, set()).add(f"{by} needs {req.name}{req.specifier or ''}")

    for r in needed:
        need(r, "edgedistill")
    carried: set[str] = set()
    changed = True
    while changed:  # constraints only grow, so a package once carried stays carried
        changed = False
        for n in sorted(constraints):
            if n in carried or image_satisfies(n, constraints[n]):
                continue
            if n in NEVER_CARRY:
                raise PlanError(f"the plan needs {n}{constraints[n]} but the image has {n} {IMAGE[n]} and the "
                                "check never replaces it (" + "; ".join(sorted(why[n])) + ")")
            if n not in nodes:
                raise PlanError(f"{n} is needed ({'; '.join(sorted(why[n]))}) but pip did not resolve it")
            carried.add(n)
            changed = True
            meta = nodes[n]["metadata"]
            extras = set(nodes[n].get("requested_extras") or [])
            for text in meta.get("requires_dist") or []:
                dep = Requirement(text)
                if applies(dep, extras):
                    need(dep, f"{meta['name']} {meta['version']}")
    plan = {}
    for n in sorted(carried):
        meta, info = nodes[n]["metadata"], nodes[n]["download_info"]
        have = IMAGE.get(n, "absent") or "present, version not recorded"
        plan[n] = {"version": meta["version"], "why": sorted(why[n]), "image": have, "url": info["url"]}
    return plan


# --- download -----------------------------------------------------------------------------------------


def download(plan: dict[str, dict], out: Path, work: Path) -> list[Path]:
    """The plan's wheels in ``out`` (one per package; other wheels there are removed)."""
    out.mkdir(parents=True, exist_ok=True)
    local = {n: p for n, p in plan.items() if p["url"].startswith("file:")}
    remote = [f"{n}=={p['version']}" for n, p in plan.items() if n not in local]
    if remote:
        proc = _pip("download", "--no-deps", "--quiet", "-d", str(work / "dl"), *PLATFORM_ARGS, *remote)
        if proc.returncode != 0:
            raise PlanError("pip download failed:\n" + proc.stderr.strip()[-1500:])
    files = list((work / "dl").glob("*.whl")) if remote else []
    for n, p in local.items():
        files.append(Path(p["url"].removeprefix("file://")))
    keep = []
    for f in files:
        dest = out / f.name
        shutil.copyfile(f, dest)
        keep.append(dest)
    for stale in set(out.glob("*.whl")) - set(keep):
        stale.unlink()
    return sorted(keep)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / ".gpu-wheels"), help="folder of the wheels (ignored by git)")
    ap.add_argument("--pyproject", default=str(ROOT / "pyproject.toml"))
    ap.add_argument("--extra", action="append", default=None, help="optional-dependency groups to include "
                    "(default: bench, for TRL)")
    ap.add_argument("--limit-mib", type=float, default=56.0, help="largest total size of the wheels (the "
                    "working tree and carried paths travel within 64 MiB together)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, download nothing")
    args = ap.parse_args(argv)
    reqs = project_requirements(Path(args.pyproject), args.extra if args.extra is not None else ["bench"])
    needed = missing_from_image(reqs)
    print("the image lacks or rejects: " + (", ".join(map(str, needed)) or "nothing"))
    out = Path(args.out)
    if not needed:
        for stale in out.glob("*.whl"):
            stale.unlink()
        return 0
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-wheels-") as tmp:
            plan = plan_carry(needed, resolve(needed, Path(tmp)))
            for n, p in plan.items():
                print(f"  {n} {p['version']}  (image: {p['image']}; {p['why'][0]})")
            if args.dry_run:
                return 0
            files = download(plan, out, Path(tmp))
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = sum(f.stat().st_size for f in files) / 2**20
    (out / "plan.json").write_text(json.dumps({"python": IMAGE_PYTHON, "needed": list(map(str, needed)),
                                               "total_mib": round(total, 2), "packages": plan,
                                               "files": [f.name for f in files]}, indent=2) + "\n")
    print(f"{len(files)} wheels, {total:.1f} MiB in {out}")
    if total > args.limit_mib:
        print(f"error: {total:.1f} MiB is over --limit-mib {args.limit_mib}; the machine gets at most 64 MiB "
              "with the working tree", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
