"""Device profiles: every file in targets/ loads and validates; bad profiles name the file and field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from edgedistill.errors import ConfigError, EdgeDistillError
from edgedistill.targets import (
    FitCheck, TargetProfile, kv_cache_bytes, list_targets, load_target, load_target_file, targets_dirs,
)

REPO_TARGETS = Path(__file__).resolve().parents[1] / "targets"
PROFILE_FILES = sorted(REPO_TARGETS.glob("*.yaml"))
REQUIRED = {"raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano-8gb", "android-snapdragon-8-gen-3",
            "iphone-15-pro", "imx8m-plus-gateway", "x86-laptop", "esp32-s3", "host"}


def test_every_required_profile_exists():
    assert REQUIRED <= {f.stem for f in PROFILE_FILES}


@pytest.mark.parametrize("path", PROFILE_FILES, ids=[f.stem for f in PROFILE_FILES])
def test_profile_loads_and_is_consistent(path):
    t = load_target_file(path)
    assert t.name == path.stem
    assert 0 < t.memory_budget_mb <= t.ram_mb
    assert 1 <= t.threads <= t.cores
    assert t.formats and all(q.split(":")[0] in t.formats for q in t.preferred_quants)
    for fld in ("memory_bandwidth_gbs", "peak_gflops", "ram_mb", "memory_budget_mb"):
        assert t.sources.get(fld), f"{path.name}: no source for {fld}"
    if t.name != "host":  # device figures are fixed numbers, and every estimate says so
        assert t.memory_bandwidth_gbs > 0 and t.peak_gflops > 0
        raw = yaml.safe_load(path.read_text())
        for fld, why in raw["sources"].items():
            assert isinstance(why, str) and why.strip()
    assert load_target(t.name) == t  # found by name through the lookup path


def test_host_profile_resolves_auto_from_this_machine():
    t = load_target("host")
    assert t.threads == len(os.sched_getaffinity(0))
    assert t.ram_mb > 0 and t.memory_budget_mb < t.ram_mb
    assert "measured" in t.sources["threads"]


def test_list_targets_and_unknown_name_lists_known():
    names = [t.name for t in list_targets()]
    assert REQUIRED <= set(names)
    with pytest.raises(EdgeDistillError) as exc:
        load_target("raspberry-pi-9")
    assert "raspberry-pi-5" in str(exc.value) and "esp32-s3" in str(exc.value)


def _write(d: Path, name: str, **changes) -> Path:
    data = yaml.safe_load((REPO_TARGETS / "raspberry-pi-5.yaml").read_text())
    data["name"] = name
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    f = d / f"{name}.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


@pytest.mark.parametrize("change,field,why", [
    ({"memory_budget_mb": 99999}, "memory_budget_mb", "more than ram_mb"),
    ({"threads": 64}, "threads", "not between 1"),
    ({"formats": ["gguf", "tflite"]}, "formats", "unknown 'tflite'"),
    ({"preferred_quants": ["onnx-genai:int4"]}, "preferred_quants", "format:quant"),
    ({"isa": "sparc-v9"}, "isa", "known ISA family"),
    ({"memory_bandwidth_gbs": -3}, "memory_bandwidth_gbs", "must be > 0"),
    ({"ram_mb": "lots"}, "ram_mb", "not a number"),
    ({"runtimes": ["onnxruntime"]}, "formats", "needs runtime 'llama.cpp'"),
    ({"transport": {"kind": "ssh", "host": "pi.local"}}, "transport.known_hosts", "known_hosts"),
    ({"transport": {"kind": "telnet"}}, "transport.kind", "not one of"),
    ({"transport": {"kind": "adb", "cpu_mask": "big"}}, "transport.cpu_mask", "hex CPU mask"),
    ({"sources": {"ram_mb": "x", "memory_budget_mb": "x", "peak_gflops": "x"}}, "sources", "memory_bandwidth_gbs"),
])
def test_invalid_profile_names_file_field_and_why(tmp_path, change, field, why):
    f = _write(tmp_path, "bad-board", **change)
    with pytest.raises(ConfigError) as exc:
        load_target("bad-board", targets_dir=tmp_path)
    msg = str(exc.value)
    assert str(f) in msg and repr(field) in msg and why in msg


def test_missing_and_unknown_fields(tmp_path):
    _write(tmp_path, "no-ram", ram_mb=None)
    with pytest.raises(ConfigError, match="missing field.*'ram_mb'"):
        load_target("no-ram", targets_dir=tmp_path)
    _write(tmp_path, "typo", memory_bandwith_gbs=3)
    with pytest.raises(ConfigError, match="unknown field.*memory_bandwith_gbs"):
        load_target("typo", targets_dir=tmp_path)
    f = _write(tmp_path, "wrong-name")
    f.rename(tmp_path / "other.yaml")
    with pytest.raises(ConfigError, match="must equal the file name 'other'"):
        load_target("other", targets_dir=tmp_path)


def test_lookup_order_targets_dir_then_env_then_builtin(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _write(a, "raspberry-pi-5", description="from --targets-dir")
    _write(b, "raspberry-pi-5", description="from env")
    _write(b, "only-env", description="env only")
    monkeypatch.setenv("EDGEDISTILL_TARGETS_DIR", str(b))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert load_target("raspberry-pi-5", targets_dir=a).description == "from --targets-dir"
    assert load_target("raspberry-pi-5").description == "from env"
    assert load_target("only-env").description == "env only"
    assert targets_dirs(a)[0] == a and targets_dirs()[-1].resolve() == REPO_TARGETS
    with pytest.raises(ConfigError, match="not a directory"):
        targets_dirs(tmp_path / "missing")


def test_packaged_copy_points_at_the_same_profiles():
    packaged = Path(__file__).resolve().parents[1] / "edgedistill" / "_targets"
    assert sorted(p.name for p in packaged.glob("*.yaml")) == [p.name for p in PROFILE_FILES]


def test_fit_check_and_kv_cache():
    t = load_target("esp32-s3")
    assert kv_cache_bytes(2, 2, 16, 256, 2) == 2 * 2 * 2 * 16 * 256 * 2
    small = t.fit_check(1 * 2**20, 0)
    big = t.fit_check(100 * 2**20, 0)
    assert isinstance(small, FitCheck) and small.fits and not big.fits
    assert "does not fit" in big.explain() and "100.0" in big.explain()


def test_profile_is_frozen():
    t = load_target("raspberry-pi-4")
    with pytest.raises(Exception):
        t.threads = 8  # type: ignore[misc]
    assert isinstance(t, TargetProfile) and isinstance(t.runtimes, tuple)
