"""`edgedistill export` command: option UX, exit codes, summary output."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import export_fake_format
from edgedistill.cli import main


@pytest.fixture
def fake(monkeypatch):
    return export_fake_format.install(monkeypatch)


def test_format_and_quant_lists_make_every_pair(fake, tiny_llama, tmp_path):
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "--format", "hf", "--quant", "exact,q4",
                                  "--out", str(tmp_path), "--name", "s", "--no-verify"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s-hf-exact", "s-hf-q4"]
    assert [q for _, q in fake.calls] == ["exact", "q4"]
    assert "unverified" in r.output


def test_artifact_option_and_json_output(fake, tiny_llama, tmp_path):
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "--artifact", "hf:exact", "--out", str(tmp_path),
                                  "--name", "s", "--json", "--new-tokens", "4"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output[r.output.index("{"):])
    assert data["passed"] and data["artifacts"][0]["verification"]["figures"]["greedy_new_tokens"] == 4


def test_verification_failure_exits_3_with_the_table(fake, tiny_llama, tmp_path):
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "--artifact", "hf:noisy", "--out", str(tmp_path),
                                  "--name", "s"])
    assert r.exit_code == 3
    assert "FAILED" in r.output and "error: 1 of 1 artifact(s) failed verification" in r.output
    assert "Traceback" not in r.output
    assert (tmp_path / "s-hf-noisy.failed").is_dir() and not (tmp_path / "s-hf-noisy").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "hf"], "--format and --quant go together"),
        ([], "name at least one 'format:quant'"),
        (["--artifact", "hf"], "is not 'format:quant'"),
        (["--artifact", "hf:int3"], "valid: exact, noisy, slow, nospace, q4, unloadable"),
    ],
)
def test_bad_options_are_clear_errors(fake, tiny_llama, tmp_path, args, message):
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "--out", str(tmp_path), *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    assert fake.calls == []
