"""The GPU check (benchmarks/gpu/run_check.py) on the CPU, and the wheel helper (scripts/gather_gpu_wheels.py).

The check's CPU run is the same command as on a GPU machine at tiny sizes, so it cannot rot unseen.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gather = _load("gather_gpu_wheels", ROOT / "scripts" / "gather_gpu_wheels.py")


def _has_trl() -> bool:
    return importlib.util.find_spec("trl") is not None


# --- the check, end to end on the CPU ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_check(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-check")
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu" / "run_check.py"), "--out", str(tmp / "out"),
                           "--work", str(tmp / "work"), "--wheels", str(tmp / "no-wheels"), "--time-limit", "900"],
                          capture_output=True, text=True, timeout=1200)  # generous: the 2 cores are shared
    report = json.loads((tmp / "out" / "gpu_check.json").read_text())
    return {"proc": proc, "report": report, "md": (tmp / "out" / "gpu_check.md").read_text(), "seconds": time.time() - t0}


def test_cpu_run_finishes_and_writes_json_and_markdown(cpu_check):
    proc, report = cpu_check["proc"], cpu_check["report"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report["gpu"] is False
    assert {p: report["parts"][p]["status"] for p in report["parts"]} == {
        "preflight": "ok", "cuda_tests": "ok", "launchers": "ok", "bench": "ok"}
    assert "# GPU check" in cpu_check["md"] and "| pair |" in cpu_check["md"]
    assert len(report["load_average"]) == 3


def test_cpu_run_skips_every_cuda_test(cpu_check):
    part = cpu_check["report"]["parts"]["cuda_tests"]
    assert part["counts"]["skipped"] == len(part["tests"]) == 7  # test_cuda_distill.py 5, test_cuda_generate.py 2
    assert part["counts"]["passed"] == part["counts"]["failed"] == part["counts"]["error"] == 0
    assert all("needs CUDA" in t["message"] for t in part["tests"].values())


def test_cpu_run_launches_torchrun_and_accelerate_with_gloo(cpu_check):
    part = cpu_check["report"]["parts"]["launchers"]
    assert part["expected_backend"] == "gloo"
    for name in ("torchrun_stop", "torchrun_resume", "accelerate_launch_cli"):
        probe = part[name]["probe"]
        assert part[name]["ok"] and probe["process_group"]["backend"] == "gloo", part[name]
        assert probe["process_group"]["world_size"] == 1
    ckpt = part["torchrun_stop"]["probe"]["checkpoint"]
    assert ckpt["ok"] and ckpt["n_tensors"] > 0 and ckpt["problems"] == []
    assert part["torchrun_stop"]["probe"]["completed"] is False
    assert part["torchrun_resume"]["probe"]["resumed_from_step"] == 2
    for name in ("torchrun_resume", "accelerate_launch_cli"):
        out = part[name]["probe"]["output"]
        assert out["ok"] and "model.safetensors" in out["files"] and "distill_summary.json" in out["files"]


def test_cpu_run_benchmarks_every_configuration(cpu_check):
    part = cpu_check["report"]["parts"]["bench"]
    assert [c["pair"] for c in part["cells"]] == ["tiny-qwen2", "tiny-gemma3"]
    for cell in part["cells"]:
        names = {"forward_kl", "topk_first_pass", "forward_kl_topk"} | ({"trl_gkd"} if _has_trl() else set())
        assert names <= set(cell["summary"]), cell
        for name in names:
            agg = cell["summary"][name]
            assert agg["tokens_per_s"] > 0 and agg["peak_mb"] > 0 and agg["mfu"] is None  # no MFU on a CPU
        if _has_trl():
            assert cell["summary"]["forward_kl"]["speed_vs_trl"] > 0
        assert cell["shape"]["seq_tokens"] <= cell["seq"] and cell["shape"]["response_tokens"] > cell["seq"] // 2
        flops = cell["flops_per_token"]
        assert flops["forward_kl"] > flops["forward_kl_topk"] > 0


def test_a_spent_time_box_still_leaves_a_report(tmp_path):
    """The bench part with no time left: every child is stopped, and the report says so per cell."""
    import bench
    import run_check

    report, saves = {}, []
    bench.run(tmp_path, gpu=False, deadline=time.time(), report=report, save=lambda: saves.append(1))
    assert saves and len(report["cells"]) == 2
    assert all(c["error"].startswith("models not prepared: time box") for c in report["cells"])
    assert run_check.part_failed("bench", report, gpu=False)
    assert "(no result: models not prepared: time box" in "\n".join(bench.markdown(report))


def test_mfu_flops_count_matches_a_hand_count():
    import shapes

    cfg = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=1, vocab_size=10, sliding_window=4,
               layer_types=["sliding_attention", "full_attention"])
    # per layer: q 8x8 + k,v 2x(8x4) + o 8x8 + mlp 3x8x16 = 64 + 64 + 64 + 384 = 576; two layers
    assert shapes.body_params(cfg) == 1152
    # seq 8: full layer mean context 4.5; sliding (w=4): (1+2+3+4 + 4*4)/8 = 3.25; 4*q*ctx per token
    attn = 4 * 8 * (4.5 + 3.25)
    assert shapes.forward_flops(cfg, 8, 1, 3) == pytest.approx(2 * 1152 * 8 + attn * 8 + 2 * 8 * 10 * 3)
    assert shapes.step_model_flops(cfg, None, 8, 1, 3) == pytest.approx(3 * shapes.forward_flops(cfg, 8, 1, 3))


# --- the wheel helper -------------------------------------------------------------------------------------


def _pyproject(tmp_path, deps, bench=("trl>=0.20",)) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text("[project]\nname = 'x'\ndependencies = " + json.dumps(list(deps))
                    + "\n[project.optional-dependencies]\nbench = " + json.dumps(list(bench)) + "\n")
    return path


def test_missing_requirements_follow_the_projects_bounds(tmp_path):
    deps = ["torch>=2.3", "transformers>=4.50,<4.58", "click>=8.1", "gguf>=0.17", "numpy>=1.26",
            "tomli>=2; python_version < '3.11'"]
    reqs = gather.project_requirements(_pyproject(tmp_path, deps), ["bench"])
    assert [r.name for r in reqs] == ["torch", "transformers", "click", "gguf", "numpy", "trl"]  # marker dropped
    assert [r.name for r in gather.missing_from_image(reqs)] == ["transformers", "gguf", "trl"]
    # the same project on transformers 5 (the image has 5.17): nothing to carry for it
    moved = gather.project_requirements(_pyproject(tmp_path, ["transformers>=5.0", "click>=8.1"]), ["bench"])
    assert [r.name for r in gather.missing_from_image(moved)] == ["trl"]


def test_image_satisfies_known_and_unknown_versions():
    from packaging.specifiers import SpecifierSet

    assert gather.image_satisfies("Transformers", SpecifierSet(">=5.0"))
    assert not gather.image_satisfies("transformers", SpecifierSet("<4.58"))
    assert gather.image_satisfies("click", SpecifierSet(">=8.1"))  # version not recorded: lower bound trusted
    assert not gather.image_satisfies("fsspec", SpecifierSet("<=2025.10.0"))  # an upper bound is not
    assert gather.image_satisfies("regex", SpecifierSet("!=2019.12.17"))
    assert not gather.image_satisfies("gguf", SpecifierSet())


def _node(name, version, requires=(), extras=()):
    return {"metadata": {"name": name, "version": version, "requires_dist": list(requires)},
            "requested_extras": list(extras), "download_info": {"url": f"https://x/{name}-{version}.whl"}}


def test_plan_carries_what_the_image_cannot_serve_and_nothing_else():
    resolved = [
        _node("trl", "1.0", ["accelerate>=1.4", "datasets>=3.0", "transformers>=4.56",
                             "rich; extra == 'dev'", "windows-only; sys_platform == 'win32'"]),
        _node("datasets", "4.0", ["huggingface-hub<1.0,>=0.25", "dill<0.4.2", "fsspec[http]<=2025.10.0", "numpy>=1.17"]),
        _node("huggingface-hub", "0.36.0", ["filelock"]),
        _node("dill", "0.4.0"), _node("fsspec", "2025.10.0", ["aiohttp!=4.0.0a0; extra == 'http'"], extras=["http"]),
        _node("transformers", "4.57.6", ["tokenizers<=0.23.0,>=0.22.0", "huggingface-hub<1.0,>=0.34"]),
        _node("tokenizers", "0.22.2"), _node("accelerate", "1.12.0", ["torch>=2.0", "psutil"]),
        _node("numpy", "2.3.0"), _node("filelock", "3.0"), _node("aiohttp", "3.9"),
    ]
    plan = gather.plan_carry([Requirement("trl>=0.20"), Requirement("transformers<4.58,>=4.50")], resolved)
    assert sorted(plan) == ["datasets", "dill", "fsspec", "huggingface-hub", "tokenizers", "transformers", "trl"]
    assert plan["huggingface-hub"]["image"] == "1.33.0" and plan["tokenizers"]["image"] == "0.23.2"
    assert any("datasets 4.0 needs fsspec" in w for w in plan["fsspec"]["why"])
    bad = resolved + [_node("needs-new-torch", "1.0", ["torch>=9"])]
    with pytest.raises(gather.PlanError, match="never replaces it"):
        gather.plan_carry([Requirement("needs-new-torch")], bad)


@pytest.mark.integration  # downloads from PyPI
def test_gather_downloads_exactly_the_missing_wheels(tmp_path):
    pyproject = _pyproject(tmp_path, ["click>=8.1", "gguf>=0.17"], bench=[])
    out = tmp_path / "wheels"
    (out).mkdir()
    (out / "stale-1.0-py3-none-any.whl").write_bytes(b"old")
    assert gather.main(["--pyproject", str(pyproject), "--out", str(out), "--extra", "bench"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert sorted(plan["packages"]) == ["gguf"]  # gguf's numpy, pyyaml, tqdm are in the image
    assert [p.name.split("-")[0] for p in out.glob("*.whl")] == ["gguf"]
    assert plan["total_mib"] < 5
