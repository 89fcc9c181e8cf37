"""Real benchmark runs in fresh subprocesses (tiny models), does-not-fit, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edgedistill.bench import BenchConfig, bench
from edgedistill.bench import harness
from edgedistill.cli import main
from edgedistill.errors import EdgeDistillError

REPO_TARGETS = Path(__file__).resolve().parents[1] / "targets"
FAST = dict(prompt_lens=[8], gen_len=4, warmup=1, min_reps=2, min_duration_s=0.0, max_reps=2, progress=False)


def _profile(d: Path, name: str, **changes) -> None:
    data = yaml.safe_load((REPO_TARGETS / "raspberry-pi-5.yaml").read_text())
    data.update(name=name, threads=1, cpu_big_cores=1, **changes)
    (d / f"{name}.yaml").write_text(yaml.safe_dump(data))


def test_bench_tiny_hf_through_torch_with_fit_and_budget(tiny_llama, tmp_path):
    tdir = tmp_path / "targets"
    tdir.mkdir()
    # the static check passes (weights + KV + 1 MB overhead < 120 MB) but Python + torch alone exceed it
    _profile(tdir, "tight-board", memory_budget_mb=120, runtime_overhead_mb=1, context_length=64)
    # a context so long that the KV cache alone is over budget: refused before running
    _profile(tdir, "huge-context", context_length=1_000_000, memory_budget_mb=250)  # KV cache 256 MB
    out = tmp_path / "out"
    report = bench(BenchConfig(artifacts=[str(tiny_llama)], targets=["host", "tight-board", "huge-context"],
                               targets_dir=str(tdir), out=str(out), **FAST))
    rows = {(r["target"], r["label"]): r for r in report.rows}

    host = rows[("host", "measured")]
    assert host["status"] == "ok", host
    assert host["reps"] == 2 and host["threads"] >= 1 and host["impl"] == "edgedistill"
    assert host["decode_tps"] > 0 and host["prefill_tps"] > 0 and host["ttft_ms"] > 0
    assert 0 < host["itl_p50_ms"] <= host["itl_p90_ms"] <= host["itl_p99_ms"]
    assert host["cold_load_s"] > 0 and host["warm_load_s"] > 0
    assert 50 < host["peak_rss_mb"] < 4000  # VmHWM of the runner process, not the machine
    assert host["decode_cv"] is not None and isinstance(host["high_cv"], bool)
    assert 0 < host["fraction_of_ceiling"] < 1 and host["ceiling_of"] == "host"
    assert rows[("host", "projected")]["decode_tps"] > 0

    tight = rows[("tight-board", "host-emulated")]
    assert tight["status"] == "does-not-fit" and tight["reason"] == "enforced budget"
    assert "over the 120.0 MB budget" in tight["error"] and tight["peak_rss_mb"] > 120
    assert rows[("tight-board", "projected")]["status"] == "fits"

    huge = rows[("huge-context", "host-emulated")]
    assert huge["status"] == "does-not-fit" and huge["reason"] == "static"
    assert "does not fit" in huge["note"] and "KV cache" in huge["note"]

    samples = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    raw = [s for s in samples if s["type"] == "sample" and s["target"] == "host"]
    assert len(raw) == 2 and all(len(s["itl_s"]) == s["gen_tokens"] - 1 for s in raw)
    assert {p.name for p in out.iterdir()} == {"results.jsonl", "results.csv", "results.md", "results.png"}
    assert not report.failed


def test_cli_bad_inputs(tmp_path, tiny_llama):
    runner = CliRunner()
    r = runner.invoke(main, ["bench", str(tmp_path / "nope.gguf")])
    assert r.exit_code == 2 and "does not exist" in r.output
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 64)
    r = runner.invoke(main, ["bench", str(bad)])
    assert r.exit_code == 2 and "not a GGUF file" in r.output
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 5)
    r = runner.invoke(main, ["bench", str(trunc)])
    assert r.exit_code == 2 and "corrupt" in r.output
    r = runner.invoke(main, ["bench", str(tiny_llama), "--target", "raspberry-pi-9"])
    assert r.exit_code == 2 and "known targets:" in r.output and "esp32-s3" in r.output
    tdir = tmp_path / "t"
    tdir.mkdir()
    _profile(tdir, "broken", memory_budget_mb=10**9)
    r = runner.invoke(main, ["bench", str(tiny_llama), "--target", "broken", "--targets-dir", str(tdir)])
    assert r.exit_code == 2 and "'memory_budget_mb'" in r.output and "broken.yaml" in r.output
    r = runner.invoke(main, ["bench", str(tiny_llama), "--target", "iphone-15-pro", "--mode", "device"])
    assert r.exit_code == 2 and "no transport" in r.output
    r = runner.invoke(main, ["bench", str(tiny_llama), "--prompt-len", "abc"])
    assert r.exit_code == 2 and "--prompt-len" in r.output


def test_runtime_not_installed_is_a_clear_error(tiny_llama, monkeypatch):
    real = harness.importlib.util.find_spec
    monkeypatch.setattr(harness.importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))
    with pytest.raises(EdgeDistillError, match="needs the torch runtime .*'torch'.* not installed"):
        bench(BenchConfig(artifacts=[str(tiny_llama)], out="", **FAST))


def test_targets_commands():
    runner = CliRunner()
    r = runner.invoke(main, ["targets", "list"])
    assert r.exit_code == 0 and "raspberry-pi-5" in r.output and "esp32-s3" in r.output
    r = runner.invoke(main, ["targets", "show", "jetson-orin-nano-8gb"])
    assert r.exit_code == 0 and "memory_bandwidth_gbs: 68" in r.output and "sources:" in r.output
    r = runner.invoke(main, ["targets", "show", "nope"])
    assert r.exit_code == 2 and "known targets" in r.output
