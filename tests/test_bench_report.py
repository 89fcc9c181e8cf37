"""Report files and `bench compare` exit codes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from edgedistill.bench.harness import BenchReport
from edgedistill.bench.report import load_rows, markdown_table, write_reports
from edgedistill.cli import main


def _row(decode=100.0, ttft=20.0, rss=300.0, status="ok", **kw):
    r = {"artifact": "m-gguf", "format": "gguf", "runtime": "llama.cpp", "target": "host", "label": "measured",
         "status": status, "prompt_len": 128, "gen_len": 64, "decode_tps": decode, "prefill_tps": 900.0,
         "ttft_ms": ttft, "itl_p50_ms": 10.0, "itl_p90_ms": 12.0, "itl_p99_ms": 20.0, "peak_rss_mb": rss,
         "cold_load_s": 0.5, "warm_load_s": 0.1, "artifact_mb": 60.0, "decode_cv": 0.02, "high_cv": False}
    r.update(kw)
    return r


def _write(tmp_path, name, rows):
    out = tmp_path / name
    report = BenchReport(rows=rows, samples=[{"artifact": "m-gguf", "rep": 0, "ttft_s": 0.02, "itl_s": [0.01]}], host={"bandwidth_gbs": 10})
    files = write_reports(report, out, {"gen_len": 64})
    return out, files


def test_reports_are_written(tmp_path):
    rows = [_row(), _row(label="projected", status="fits", prompt_len=None, fit="fits: needs 1 MB"),
            _row(target="esp32-s3", label="host-emulated", status="does-not-fit", reason="static", decode=None)]
    out, files = _write(tmp_path, "r", rows)
    assert set(files) == {"jsonl", "csv", "md", "png"}
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines] == ["meta", "row", "row", "row", "sample"]
    csv_text = (out / "results.csv").read_text()
    assert csv_text.splitlines()[0].startswith("artifact,format,runtime,target,label,status")
    assert len(csv_text.strip().splitlines()) == 4
    md = (out / "results.md").read_text()
    assert "does-not-fit (static)" in md and "| m-gguf | host | measured | ok |" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*tmp"))  # no temp files left behind
    assert len(load_rows(out)) == 3


def test_markdown_marks_high_cv():
    md = markdown_table([_row(decode_cv=0.25, high_cv=True)])
    assert "25.0% ⚠ high" in md


def test_compare_exit_codes(tmp_path):
    old, _ = _write(tmp_path, "old", [_row()])
    same, _ = _write(tmp_path, "same", [_row(decode=98.0)])          # -2%: within 5%
    slower, _ = _write(tmp_path, "slower", [_row(decode=90.0)])      # -10% decode
    fatter, _ = _write(tmp_path, "fatter", [_row(rss=400.0)])        # +33% memory
    broken, _ = _write(tmp_path, "broken", [_row(status="error", decode=None)])
    faster, _ = _write(tmp_path, "faster", [_row(decode=150.0, ttft=10.0)])
    runner = CliRunner()
    r = runner.invoke(main, ["bench", "compare", str(old), str(same), "--threshold", "5%"])
    assert r.exit_code == 0, r.output
    assert "no regression beyond 5%" in r.output
    for bad in (slower, fatter, broken):
        r = runner.invoke(main, ["bench", "compare", str(old), str(bad), "--threshold", "5%"])
        assert r.exit_code == 1 and "REGRESSION" in r.output, r.output
    r = runner.invoke(main, ["bench", "compare", str(old), str(slower), "--threshold", "15%"])
    assert r.exit_code == 0
    r = runner.invoke(main, ["bench", "compare", str(old), str(faster / "results.jsonl")])
    assert r.exit_code == 0 and "+50.0%" in r.output


def test_compare_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.jsonl").write_text('{"type": "meta"}\n')
    old, _ = _write(tmp_path, "old", [_row()])
    runner = CliRunner()
    r = runner.invoke(main, ["bench", "compare", str(old), str(tmp_path / "empty")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(main, ["bench", "compare", str(old), str(tmp_path / "junk.jsonl")])
    assert r.exit_code == 2 and "no benchmark rows" in r.output
    r = runner.invoke(main, ["bench", "compare", str(old), str(old), "--threshold", "lots"])
    assert r.exit_code == 2 and "--threshold" in r.output
