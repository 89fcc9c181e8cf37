"""Device profiles: what an edge device can hold and how fast it can read memory and do arithmetic.

A profile is a YAML file ``targets/<name>.yaml`` (see ``docs/bench.md``) loaded into a frozen
:class:`TargetProfile`. Target-aware export uses it to pick formats and quantizations that fit;
``edgedistill bench`` uses it to emulate the device on the host (threads, memory budget), to project
speeds from bandwidth and GFLOP/s, and to reach the real device (``transport``).

Where profiles are looked up, first match by name wins:

1. ``--targets-dir`` (``targets_dir=`` argument), if given;
2. every directory in ``EDGEDISTILL_TARGETS_DIR`` (``os.pathsep``-separated);
3. ``~/.config/edgedistill/targets`` (or ``$XDG_CONFIG_HOME/edgedistill/targets``);
4. the built-in profiles: ``targets/`` at the repository root in a source checkout / editable
   install, else the copy packaged inside the wheel as ``edgedistill/_targets`` (a symlink to
   ``../targets`` in the repository, so there is one set of files).

The current working directory is deliberately *not* searched: a project's unrelated ``targets/``
folder must not change what ``--target raspberry-pi-5`` means. Use ``--targets-dir ./targets``.

A value of ``auto`` is allowed for the host-describing numbers (cores, threads, RAM, budget,
bandwidth, GFLOP/s); it is resolved on the machine that loads the profile (the ``host`` profile).
Bandwidth/GFLOP/s ``auto`` come from the cached probe (``edgedistill.bench.bandwidth``) when there is
one, else stay ``None`` until the benchmark measures them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.errors import ConfigError, EdgeDistillError, did_you_mean
from edgedistill.packaged_models import cache_root
from edgedistill.quant_spec import FormatQuant
from edgedistill.runtime_registry import RUNTIMES as RUNTIME_SPECS
from edgedistill.runtime_registry import export_formats, runtime_for_format

FORMATS = tuple(export_formats())  # what a profile's `formats` may list: the runtime registry's `exporter`s
RUNTIMES = tuple(RUNTIME_SPECS.names())  # what a profile's `runtimes` may list: edgedistill.runtime_registry
TRANSPORT_KINDS = ("local", "ssh", "adb", "none")
ISA_FAMILIES = ("armv7", "armv8", "armv9", "x86-64", "xtensa", "riscv32", "riscv64")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
AUTO_FIELDS = (
    "cpu_big_cores", "cpu_little_cores", "threads", "ram_mb", "memory_budget_mb",
    "memory_bandwidth_gbs", "peak_gflops",
)


@dataclass(frozen=True)
class TransportSettings:
    """How to reach the real device. ``local``: run here; ``ssh``: a Linux board over OpenSSH;
    ``adb``: an Android phone; ``none``: no way to run on it (projection and emulation only)."""

    kind: str = "local"
    host: str | None = None
    port: int = 22
    user: str | None = None
    key: str | None = None
    """Private key file (``ssh -i``); None: ssh's own defaults/agent."""
    known_hosts: str | None = None
    """known_hosts file used with StrictHostKeyChecking=yes (required for ssh)."""
    remote_dir: str = "/tmp/edgedistill-bench"
    python: str = "python3"
    """Python on the device; the runner needs only it and the runtime package."""
    serial: str | None = None
    """adb device serial (``adb -s``); None: the only attached device."""
    cpu_mask: str | None = None
    """Hex affinity mask of the big cores for ``taskset`` on the device, e.g. ``fc``."""
    connect_timeout_s: int = 15

    def validate(self, where: str) -> None:
        def bad(fld: str, why: str) -> ConfigError:
            return ConfigError(f"{where}: invalid field 'transport.{fld}': {why}")

        if self.kind not in TRANSPORT_KINDS:
            raise bad("kind", f"{self.kind!r} is not one of {', '.join(TRANSPORT_KINDS)}")
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise bad("port", f"{self.port!r} is not a TCP port number")
        if not isinstance(self.connect_timeout_s, int) or self.connect_timeout_s < 1:
            raise bad("connect_timeout_s", "must be a whole number of seconds >= 1")
        if self.kind == "ssh":
            if not self.host:
                raise bad("host", "ssh transport needs a host")
            if not self.known_hosts:
                raise bad("known_hosts", "ssh transport needs a known_hosts file (host keys are always checked)")
        if self.cpu_mask is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", str(self.cpu_mask)):
            raise bad("cpu_mask", f"{self.cpu_mask!r} is not a hex CPU mask such as 'fc'")


@dataclass(frozen=True)
class TargetProfile:
    """One device class. Numbers are per device; ``sources`` says where each comes from."""

    name: str
    description: str
    cpu_big_cores: int
    cpu_little_cores: int
    isa: str
    ram_mb: float
    memory_budget_mb: float
    """What one app may use before the OS kills it or swaps (smaller than ram_mb)."""
    memory_bandwidth_gbs: float | None
    """Peak DRAM bandwidth, GB/s (1e9 bytes/s); None only for ``auto`` not yet measured."""
    peak_gflops: float | None
    """Approximate FP32 CPU peak, GFLOP/s; None only for ``auto`` not yet measured."""
    runtimes: tuple[str, ...]
    formats: tuple[str, ...]
    preferred_quants: tuple[str, ...]
    """Ordered "format:quant" choices, best first, e.g. ("gguf:q4_k_m", "onnx:int4")."""
    context_length: int
    """Context the app will use; sizes the KV cache in fit checks and projections."""
    runtime_overhead_mb: float
    """Memory the runtime itself needs beyond weights and KV cache (buffers, code, allocator)."""
    threads: int
    transport: TransportSettings = field(default_factory=TransportSettings)
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    cpu: str = ""
    """Human description of the CPU, e.g. '4x Cortex-A76 @ 2.4 GHz'."""
    core_class: str = ""
    """Core class whose published measurements calibrate speed predictions (edgedistill.bench.predict);
    empty: inferred from ``cpu`` / ``isa``, else the all-classes fallback."""
    core_gflops: tuple[float, ...] = ()
    """FP32 GFLOP/s of each core (a phone's prime, performance and efficiency cores differ); the speed
    predictor runs its threads on the fastest. Empty: ``peak_gflops`` / cores each."""
    all_core_clock_ratio: float = 1.0
    """Sustained clock with every core busy over the clock with one core busy (a power-limited laptop
    chip cannot hold its one-core turbo on all cores); 1: no such limit. ``core_gflops`` are one-core rates."""
    source_file: str = field(default="", compare=False)

    def __post_init__(self):
        # Each step raises ConfigError naming the file and the field; the order decides which of several
        # errors is reported first.
        self._check_identity()
        self._check_cpu()
        self._check_memory()
        self._check_software()
        self._check_transport()
        self._check_sources()

    def _where(self) -> str:
        return self.source_file or f"target {self.name!r}"

    def _bad(self, fld: str, why: str) -> ConfigError:
        return ConfigError(f"{self._where()}: invalid field {fld!r}: {why}")

    def _set(self, fld: str, value: Any) -> None:
        object.__setattr__(self, fld, value)  # frozen: normalised values are set once, here

    def _check_identity(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise self._bad("name", f"{self.name!r} must be lower-case letters, digits, '.', '-' or '_'")
        if self.source_file and Path(self.source_file).stem != self.name:
            raise self._bad("name", f"{self.name!r} must equal the file name {Path(self.source_file).stem!r}")
        if not isinstance(self.description, str) or not self.description.strip():
            raise self._bad("description", "must be a non-empty string")

    def _check_cpu(self) -> None:
        """Core counts, threads, context length, ISA and core class."""
        bad = self._bad
        for fld in ("cpu_big_cores", "cpu_little_cores", "threads", "context_length"):
            v = getattr(self, fld)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(fld, f"{v!r} is not a whole number")
        if self.cpu_big_cores < 1:
            raise bad("cpu_big_cores", "a device needs at least one (big) core")
        if self.cpu_little_cores < 0:
            raise bad("cpu_little_cores", "must be >= 0")
        if not 1 <= self.threads <= self.cpu_big_cores + self.cpu_little_cores:
            raise bad("threads", f"{self.threads} is not between 1 and the {self.cpu_big_cores + self.cpu_little_cores} cores")
        if self.context_length < 1:
            raise bad("context_length", "must be >= 1 token")
        if not isinstance(self.isa, str) or not self.isa.startswith(ISA_FAMILIES):
            raise bad("isa", f"{self.isa!r} does not start with a known ISA family ({', '.join(ISA_FAMILIES)})")
        if self.core_class and not _NAME_RE.match(str(self.core_class)):
            raise bad("core_class", f"{self.core_class!r} must be a name such as 'cortex-a76'")
        cg = self.core_gflops or ()
        if isinstance(cg, str) or not isinstance(cg, (list, tuple)) or any(
                isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0 for x in cg):
            raise bad("core_gflops", f"{cg!r} must be a list of positive GFLOP/s, one per core")
        if cg and len(cg) != self.cpu_big_cores + self.cpu_little_cores:
            raise bad("core_gflops", f"lists {len(cg)} cores; the profile has {self.cpu_big_cores + self.cpu_little_cores}")
        self._set("core_gflops", tuple(float(x) for x in cg))
        r = self.all_core_clock_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
            raise bad("all_core_clock_ratio", f"{r!r} must be a number in (0, 1]: all-core over one-core clock")

    def _check_memory(self) -> None:
        """The numeric figures (made floats), and budget <= RAM, runtime overhead < budget."""
        bad = self._bad
        for fld in ("ram_mb", "memory_budget_mb", "runtime_overhead_mb", "memory_bandwidth_gbs", "peak_gflops"):
            v = getattr(self, fld)
            if v is None and fld in ("memory_bandwidth_gbs", "peak_gflops"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad(fld, f"{v!r} is not a number")
            if v < 0 or (v == 0 and fld != "runtime_overhead_mb"):
                raise bad(fld, f"{v!r} must be > 0")
            self._set(fld, float(v))
        if self.memory_budget_mb > self.ram_mb:
            raise bad("memory_budget_mb", f"{self.memory_budget_mb:g} MB is more than ram_mb ({self.ram_mb:g} MB)")
        if self.runtime_overhead_mb >= self.memory_budget_mb:
            raise bad("runtime_overhead_mb", "is not smaller than memory_budget_mb")

    def _check_software(self) -> None:
        """Runtimes and formats known (each format's runtime listed), preferred quants 'format:quant'."""
        bad = self._bad
        for fld, valid in (("runtimes", RUNTIMES), ("formats", FORMATS)):
            v = getattr(self, fld)
            if isinstance(v, str) or not isinstance(v, (list, tuple)):
                raise bad(fld, f"must be a list, got {v!r}")
            unknown = [x for x in v if x not in valid]
            if unknown:
                raise bad(fld, f"unknown {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
            self._set(fld, tuple(v))
        for fmt in self.formats:
            if runtime_for_format(fmt).name not in self.runtimes:
                raise bad("formats", f"{fmt!r} needs runtime {runtime_for_format(fmt).name!r}, which is not in runtimes")
        pq = self.preferred_quants
        if isinstance(pq, str) or not isinstance(pq, (list, tuple)):
            raise bad("preferred_quants", f"must be a list of 'format:quant', got {pq!r}")
        specs = []
        for item in pq:
            try:  # any well-formed quant of the profile's formats: the exporters need not be installed here
                specs.append(FormatQuant.parse(item, known=dict.fromkeys(self.formats)))
            except ConfigError:
                raise bad("preferred_quants", f"{item!r} is not 'format:quant' with a format from formats "
                                              f"{list(self.formats)}") from None
        self._set("preferred_quants", tuple(str(s) for s in specs))

    def _check_transport(self) -> None:
        """A mapping becomes TransportSettings (unknown keys refused), then validates itself."""
        tr = self.transport
        if isinstance(tr, dict):
            valid = [f.name for f in dataclasses.fields(TransportSettings)]
            unknown = sorted(set(tr) - set(valid))
            if unknown:
                raise self._bad("transport", f"unknown key(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
            tr = TransportSettings(**tr)
            self._set("transport", tr)
        if not isinstance(tr, TransportSettings):
            raise self._bad("transport", "must be a mapping with at least 'kind'")
        tr.validate(self._where())

    def _check_sources(self) -> None:
        """Every figure a prediction rests on says where it comes from; no source names an unknown field."""
        bad = self._bad
        if not isinstance(self.sources, dict):
            raise bad("sources", "must be a mapping field -> where the figure comes from")
        fields = {f.name for f in dataclasses.fields(self)}
        tfields = {f"transport.{f.name}" for f in dataclasses.fields(TransportSettings)}
        unknown = sorted(set(self.sources) - fields - tfields)
        if unknown:
            raise bad("sources", f"names unknown field(s) {', '.join(unknown)}")
        for fld in ("memory_bandwidth_gbs", "peak_gflops", "ram_mb", "memory_budget_mb"):
            if fld not in self.sources:
                raise bad("sources", f"says nowhere where {fld!r} comes from (a datasheet, a measurement, or 'estimate: ...')")

    # -- derived figures ---------------------------------------------------------------------------
    @property
    def cores(self) -> int:
        return self.cpu_big_cores + self.cpu_little_cores

    @property
    def memory_budget_bytes(self) -> int:
        return int(self.memory_budget_mb * 2**20)

    def fit_check(self, weights_bytes: int, kv_cache_bytes: int = 0) -> "FitCheck":
        """Static check: do weights + KV cache + runtime overhead fit the memory budget?"""
        need = weights_bytes + kv_cache_bytes + int(self.runtime_overhead_mb * 2**20)
        return FitCheck(
            fits=need <= self.memory_budget_bytes,
            need_mb=need / 2**20,
            budget_mb=self.memory_budget_mb,
            weights_mb=weights_bytes / 2**20,
            kv_cache_mb=kv_cache_bytes / 2**20,
            overhead_mb=self.runtime_overhead_mb,
        )

    def summary(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source_file")
        return d


@dataclass(frozen=True)
class FitCheck:
    fits: bool
    need_mb: float
    budget_mb: float
    weights_mb: float
    kv_cache_mb: float
    overhead_mb: float
    overhead_source: str = ""
    """Where the runtime's memory comes from (edgedistill.bench.memory.fit_check); empty: the profile's."""

    def explain(self) -> str:
        verdict = "fits" if self.fits else "does not fit"
        src = f" ({self.overhead_source})" if self.overhead_source else ""
        return (
            f"{verdict}: needs {self.need_mb:.1f} MB (weights {self.weights_mb:.1f} + KV cache "
            f"{self.kv_cache_mb:.1f} + runtime {self.overhead_mb:.0f}{src}) of a {self.budget_mb:.0f} MB budget"
        )


def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, context_length: int, bytes_per_value: float = 2) -> int:
    """Keys + values for ``context_length`` tokens (fp16 by default, as llama.cpp stores them)."""
    return int(2 * num_layers * num_kv_heads * head_dim * context_length * bytes_per_value)


# -- lookup ----------------------------------------------------------------------------------------
def _builtin_dir() -> Path:
    here = Path(__file__).resolve().parent
    repo = here.parent / "targets"  # source checkout / editable install
    if repo.is_dir() and (here.parent / "pyproject.toml").exists():
        return repo
    return here / "_targets"  # wheel: package data


def targets_dirs(targets_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for profiles, highest priority first (see the module docstring)."""
    dirs: list[Path] = []
    if targets_dir:
        p = Path(targets_dir).expanduser()
        if not p.is_dir():
            raise ConfigError(f"--targets-dir {p} is not a directory")
        dirs.append(p)
    for part in os.environ.get("EDGEDISTILL_TARGETS_DIR", "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part).expanduser())
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    dirs.append(config_home / "edgedistill" / "targets")
    dirs.append(_builtin_dir())
    out, seen = [], set()
    for d in dirs:
        key = d.resolve() if d.exists() else d
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _profile_files(targets_dir=None) -> dict[str, Path]:
    """name -> file, first directory wins."""
    found: dict[str, Path] = {}
    for d in targets_dirs(targets_dir):
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            found.setdefault(f.stem, f)
    return found


def load_target_file(path: str | os.PathLike) -> TargetProfile:
    """Load and validate one profile file; errors name the file and field."""
    from edgedistill.config import load_yaml

    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a target profile must be a YAML mapping")
    valid = {f.name for f in dataclasses.fields(TargetProfile)} - {"source_file"}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(valid))}")
    missing = sorted(f.name for f in dataclasses.fields(TargetProfile)
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                     and f.name not in data)
    if missing:
        raise ConfigError(f"{path}: missing field(s) {', '.join(map(repr, missing))}")
    data = _resolve_auto(dict(data), path)
    return TargetProfile(**data, source_file=str(path))


def load_target(name: str, targets_dir: str | os.PathLike | None = None) -> TargetProfile:
    """The profile called ``name``; an unknown name lists the known ones and where they were looked for."""
    if isinstance(name, TargetProfile):
        return name
    files = _profile_files(targets_dir)
    if name not in files:
        dirs = ", ".join(str(d) for d in targets_dirs(targets_dir))
        raise EdgeDistillError(
            f"unknown target {name!r}; {did_you_mean(str(name), sorted(files), label='known targets')}",
            hint=f"profiles are looked up in {dirs}; add NAME.yaml to one of them or pass --targets-dir",
        )
    return load_target_file(files[name])


def list_targets(targets_dir: str | os.PathLike | None = None) -> list[TargetProfile]:
    """Every profile found, sorted by name (an invalid file is an error naming it)."""
    return [load_target_file(f) for _, f in sorted(_profile_files(targets_dir).items())]


# -- `auto` values (the host profile) --------------------------------------------------------------
def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _meminfo_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import psutil

        vm = psutil.virtual_memory()
        return (vm.total if key == "MemTotal" else vm.available) / 2**20
    except Exception:
        return None


def cached_host_probe() -> dict | None:
    """The host bandwidth/GFLOP/s probe result cached by ``edgedistill.bench.bandwidth``, if any."""
    path = cache_root() / "bandwidth.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _resolve_auto(data: dict, path: Path) -> dict:
    sources = dict(data.get("sources") or {})
    if data.get("isa") == "auto":
        import platform

        machine = platform.machine().lower()
        data["isa"] = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "armv8-a", "arm64": "armv8-a",
                       "armv7l": "armv7-a", "riscv64": "riscv64"}.get(machine, machine)
        sources.setdefault("isa", f"measured: platform.machine() = {machine!r} (base ISA only, no extensions)")
        data["sources"] = sources
    autos = [k for k in AUTO_FIELDS if data.get(k) == "auto"]
    if not autos:
        return data
    cpus = _usable_cpus()
    probe = cached_host_probe() or {}
    ram = _meminfo_mb("MemTotal") or 4096.0
    resolved = {
        "cpu_big_cores": (cpus, "measured: CPUs this process may use (os.sched_getaffinity / os.cpu_count)"),
        "cpu_little_cores": (0, "host cores are all counted as big cores"),
        "threads": (cpus, "measured: CPUs this process may use"),
        "ram_mb": (round(ram), "measured: MemTotal from /proc/meminfo"),
        "memory_budget_mb": (round(ram * 0.75), "estimate: 75% of this host's MemTotal"),
        "memory_bandwidth_gbs": (probe.get("bandwidth_gbs"), f"measured: STREAM-like numpy probe ({probe.get('method', 'not run yet')})"),
        "peak_gflops": (probe.get("gflops"), f"measured: numpy float32 matmul probe ({probe.get('method', 'not run yet')})"),
    }
    for k in autos:
        data[k], why = resolved[k]
        sources.setdefault(k, why)
    data["sources"] = sources
    return data
