"""Comparison table: Markdown / JSON / chart, bench merging, retention formatting."""

from __future__ import annotations

import json

import pytest

from edgedistill.errors import EdgeDistillError
from edgedistill.eval.evaluate import EvalReport, add_retention
from edgedistill.eval.table import apply_bench, bench_entries, headline, markdown_table, write_report


def _row(name, path, ppl, rouge, size):
    return {"name": name, "path": str(path), "format": "gguf", "runtime": "llama.cpp", "parameters": 270_000_000,
            "size_bytes": size, "peak_memory_mb": 300.0, "ttft_ms": 50.0, "decode_tokens_per_s": 20.0,
            "speed_source": "eval (light)", "perplexity_mode": "full",
            "scores": {"rouge_l": rouge, "bleu": 1.0, "chrf": 20.0, "perplexity": ppl, "top1_agreement": None,
                       "teacher_rouge_l": None}, "notes": []}


@pytest.fixture()
def report(tmp_path):
    art = tmp_path / "student-gguf-q4_k_m"
    art.mkdir()
    rows = [_row("teacher", tmp_path / "t.gguf", 10.0, 40.0, 250 * 2**20),
            _row("student-gguf-q4_k_m", art, 20.0, 30.0, 100 * 2**20)]
    add_retention(rows, rows[0])
    return EvalReport(task="summarization", data="test.jsonl", records=3, primary_metric="rouge_l",
                      metrics=["rouge_l", "bleu", "chrf"], teacher="teacher", rows=rows, notes=["a note"])


def test_retention_and_markdown(report):
    student = report.rows[1]
    assert student["retention"]["rouge_l"] == pytest.approx(0.75)
    assert student["retention"]["perplexity"] == pytest.approx(0.5)  # teacher_ppl / model_ppl
    md = markdown_table(report)
    line = next(l for l in md.splitlines() if l.startswith("| student-gguf-q4_k_m"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:9] == ["student-gguf-q4_k_m", "gguf", "270.0M", "100.0 MB", "300 MB", "50 ms", "20.00", "30.00",
                         "0.75"]
    assert cells[9:11] == ["20.00", "0.50"]
    assert "- a note" in md


def test_bench_results_replace_light_measurements(report, tmp_path):
    art_path = report.rows[1]["path"]
    lines = [
        {"type": "meta", "config": {}},
        {"type": "row", "artifact": "student-gguf-q4_k_m", "artifact_path": art_path, "target": "host",
         "label": "projected", "status": "fits", "decode_tps": 999.0},
        {"type": "row", "artifact": "student-gguf-q4_k_m", "artifact_path": art_path, "target": "host",
         "label": "measured", "status": "ok", "ttft_ms": 12.5, "decode_tps": 33.0, "peak_rss_mb": 210.0},
        {"type": "row", "artifact": "student-gguf-q4_k_m", "artifact_path": art_path, "target": "raspberry-pi-5",
         "label": "host-emulated", "status": "ok", "ttft_ms": 40.0, "decode_tps": 11.0, "peak_rss_mb": 205.0},
    ]
    bench_dir = tmp_path / "bench"
    bench_dir.mkdir()
    (bench_dir / "results.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    assert len(bench_entries(bench_dir)) == 2  # the projection is not a measurement
    apply_bench(report, [str(bench_dir)])
    student, teacher = report.rows[1], report.rows[0]
    assert (student["ttft_ms"], student["decode_tokens_per_s"], student["peak_memory_mb"]) == (12.5, 33.0, 210.0)
    assert student["speed_source"] == "bench (target host)"
    assert teacher["speed_source"] == "eval (light)" and teacher["ttft_ms"] == 50.0
    md = markdown_table(report)
    assert "### Bench, per target" in md and "| student-gguf-q4_k_m | raspberry-pi-5 |" in md


def test_missing_bench_report_is_a_clear_error(report, tmp_path):
    with pytest.raises(EdgeDistillError, match="does not exist"):
        apply_bench(report, [str(tmp_path / "nope.jsonl")])


def test_write_report_files(report, tmp_path):
    files = write_report(report, tmp_path / "out")
    data = json.loads(open(files["json"]).read())
    assert data["rows"][1]["retention"]["rouge_l"] == pytest.approx(0.75)
    assert open(files["chart"], "rb").read(4) == b"\x89PNG"
    assert open(files["markdown"]).read().startswith("## Comparison")


def _bench_dir(tmp_path, rows):
    d = tmp_path / "bench"
    d.mkdir(exist_ok=True)
    (d / "results.jsonl").write_text("".join(json.dumps({"type": "row", "label": "measured", "status": "ok", **r})
                                             + "\n" for r in rows))
    return str(d)


def test_headline_from_bench_figures_of_both(report, tmp_path):
    teacher, student = report.rows
    report.rows[0]["role"] = "teacher"
    apply_bench(report, [_bench_dir(tmp_path, [
        {"artifact_path": teacher["path"], "target": "host", "ttft_ms": 90.0, "decode_tps": 10.0},
        {"artifact_path": student["path"], "target": "host", "ttft_ms": 20.0, "decode_tps": 55.0}])])
    text, why_not = headline(report, "student-gguf-q4_k_m")
    assert why_not is None
    # 100 MB of 250 MB, 55 / 10 tok/s, ROUGE-L 30 of 40
    assert text == "student vs teacher: 60% smaller, 5.5× faster decode on host, 75% of the teacher's ROUGE-L kept"
    report.headline = text
    assert f"**{text}**" in markdown_table(report)


def test_headline_never_mixes_speed_methods(report, tmp_path):
    report.rows[0]["role"] = "teacher"
    # the student benched, the teacher timed by eval only: no speed ratio
    apply_bench(report, [_bench_dir(tmp_path, [
        {"artifact_path": report.rows[1]["path"], "target": "host", "decode_tps": 55.0}])])
    text, _ = headline(report, "student-gguf-q4_k_m")
    assert "decode speed not compared" in text and "×" not in text
    report.rows[1]["size_bytes"] = 300 * 2**20
    assert "20% larger" in headline(report, "student-gguf-q4_k_m")[0]
    assert headline(report, "no-such-artifact") == (None, "no headline: the report has no 'no-such-artifact' row")
