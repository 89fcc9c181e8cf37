"""An unknown name (target, format, quant type, task, stage) is one `error:` line that lists the valid
names and, for a near miss, asks "did you mean ...?"."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import export_fake_format
from edgedistill.cli import main
from edgedistill.errors import did_you_mean


def test_did_you_mean_lists_in_order_and_suggests_only_near_misses():
    assert did_you_mean("q4_k_n", ["q8_0", "q4_k_m", "f16"]) == "valid: q8_0, q4_k_m, f16; did you mean 'q4_k_m'?"
    assert did_you_mean("chat", ["conversation", "math", "qa"]) == "valid: conversation, math, qa"
    assert did_you_mean("x", []) == "valid: (none)"
    assert did_you_mean("raspbery-pi-5", ["raspberry-pi-5"], label="known targets") == \
        "known targets: raspberry-pi-5; did you mean 'raspberry-pi-5'?"


def clean_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_unknown_target():
    r = CliRunner().invoke(main, ["targets", "show", "raspbery-pi-5"])
    clean_error(r, "unknown target 'raspbery-pi-5'; known targets:", "did you mean 'raspberry-pi-5'?")


@pytest.mark.parametrize("spec, fragments", [
    ("hf:exakt", ["quantization 'exakt' is not available for format hf; valid: exact", "did you mean 'exact'?"]),
    ("hff:exact", ["unknown export format 'hff'", "did you mean 'hf'?"]),
])
def test_unknown_format_or_quant(monkeypatch, tiny_llama, tmp_path, spec, fragments):
    fake = export_fake_format.install(monkeypatch)
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "--artifact", spec, "--out", str(tmp_path)])
    clean_error(r, *fragments)
    assert fake.calls == []


def test_unknown_task(tmp_path, tiny_llama):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    r = CliRunner().invoke(main, ["generate", "--teacher", str(tiny_llama), "--data", str(data),
                                  "--out", str(tmp_path / "o.jsonl"), "--task", "summarisation"])
    clean_error(r, "unknown task 'summarisation'", "did you mean 'summarization'?")


def test_unknown_stage(tmp_path):
    r = CliRunner().invoke(main, ["run", str(tmp_path / "r.yaml"), "--from-stage", "distil"])
    assert r.exit_code == 2 and "'distil' is not one of" in r.output  # click's own check of the registered names
