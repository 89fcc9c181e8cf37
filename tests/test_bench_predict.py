"""Speed predictor: physical behaviour, fallback, errors, and the calibration fit (no subprocesses)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgedistill.bench.calibrate import (
    FIXED_GRID, GIB, OVERLAP_GRID, fit, leave_one_device_out, load_figures, predict_figure,
)
from edgedistill.bench.calibration_data import CALIBRATION
from edgedistill.bench.predict import ClassConstants, core_class_of, predict_speed
from edgedistill.bench.projection import ModelShape
from edgedistill.errors import ConfigError
from edgedistill.targets import load_target

FIGURES = Path(__file__).resolve().parent.parent / "benchmarks" / "published" / "decode_figures.yaml"


def _shape(params=3.21e9, weight_bytes=int(1.87 * GIB), layers=28, **kw):
    base = dict(params=int(params), weight_bytes=weight_bytes, bytes_read_per_token=weight_bytes, num_layers=layers,
                num_kv_heads=8, head_dim=128, kv_bytes_per_value=2, source="test")
    base.update(kw)
    return ModelShape(**base)


def test_prediction_sits_below_the_ceiling_and_inside_its_range():
    p = predict_speed(_shape(), load_target("raspberry-pi-5"), context=256)
    assert p.label == "predicted" and p.core_class == "cortex-a76"
    assert p.calibration.startswith("core class cortex-a76")
    assert p.predicted_decode_tok_s < p.decode_ceiling_tok_s
    assert p.predicted_decode_tok_s_low <= p.predicted_decode_tok_s <= p.predicted_decode_tok_s_high
    assert p.predicted_prefill_tok_s < p.prefill_ceiling_tok_s
    # TTFT is the prompt over the prefill rate plus one decode step
    assert p.predicted_ttft_ms == pytest.approx((128 / p.predicted_prefill_tok_s + 1 / p.predicted_decode_tok_s) * 1e3)


def test_decode_slows_as_the_kv_cache_grows_and_threads_help_compute_bound_decode():
    pi5 = load_target("raspberry-pi-5")
    short = predict_speed(_shape(), pi5, context=128)
    long = predict_speed(_shape(), pi5, context=32768)
    assert long.bytes_per_token > short.bytes_per_token
    assert long.predicted_decode_tok_s < short.predicted_decode_tok_s
    one = predict_speed(_shape(), pi5, context=128, threads=1)
    assert one.decode_bound == "compute" and one.predicted_decode_tok_s < short.predicted_decode_tok_s
    # threads beyond the cores count as the cores
    assert predict_speed(_shape(), pi5, context=128, threads=64).threads == pi5.cores


def test_a_tiny_model_is_far_below_its_ceiling():
    """The per-token fixed cost dominates small models; the ceiling ignores it."""
    tiny = _shape(params=30e6, weight_bytes=20 * 2**20, layers=18, num_kv_heads=1, head_dim=64)
    p = predict_speed(tiny, load_target("raspberry-pi-5"), context=256)
    if CALIBRATION["fixed_us_per_layer"] > 0:
        assert p.predicted_decode_tok_s <= 1e6 / (18 * CALIBRATION["fixed_us_per_layer"])
    assert p.predicted_decode_tok_s < 0.7 * p.decode_ceiling_tok_s


def test_unknown_core_class_falls_back_and_says_so():
    imx = load_target("imx8m-plus-gateway")
    unknown = dataclasses.replace(imx, core_class="riscv-mystery")
    p = predict_speed(_shape(), unknown, context=256)
    assert p.calibration.startswith("fallback: no published figures for core class riscv-mystery")


def test_inferred_core_classes_of_builtin_profiles():
    assert core_class_of(load_target("raspberry-pi-5")) == ("cortex-a76", True)
    assert core_class_of(load_target("jetson-orin-nano-8gb"))[0] in ("cortex-a76", "cortex-a72", "snapdragon-8-gen-3", "x86-avx2", "")


def test_a_target_without_predictor_fields_is_a_clear_error():
    pi5 = load_target("raspberry-pi-5")
    with pytest.raises(ConfigError, match="'memory_bandwidth_gbs' is missing"):
        predict_speed(_shape(), dataclasses.replace(pi5, memory_bandwidth_gbs=None))
    with pytest.raises(ConfigError, match="no speed calibration for runtime 'torch'"):
        predict_speed(_shape(), pi5, runtime="torch")


def test_fit_recovers_constants_of_synthetic_figures():
    """Figures made by the model itself with known constants are fitted back to those constants."""
    devices = {"d1": {"core_class": "c", "cores": 4, "memory_bandwidth_gbs": 20.0, "core_gflops": 40.0},
               "d2": {"core_class": "c", "cores": 3, "memory_bandwidth_gbs": 10.0, "core_gflops": [60.0, 30.0, 10.0]}}
    truth = ClassConstants(0.55, 0.3)
    figures = []
    for dev, threads, gib in (("d1", 4, 2.0), ("d1", 1, 2.0), ("d1", 2, 0.5), ("d2", 2, 4.0), ("d2", 1, 1.0), ("d2", 3, 1.0),
                              ("d1", 4, 0.01)):  # a tiny model: the one that sees the per-layer cost
        f = {"device": dev, "size_gib": gib, "params_b": gib * 1.8, "layers": 28, "threads": threads, "source": "synthetic"}
        f["decode_tps"] = predict_figure(f, devices[dev], truth, FIXED_GRID[2], OVERLAP_GRID[2])
        figures.append(f)
    cal = fit(devices, figures)
    got = cal["classes"]["c"]
    assert got["bw_efficiency"] == pytest.approx(0.55, abs=0.011)
    assert got["compute_efficiency"] == pytest.approx(0.3, rel=0.08)
    assert cal["overlap_exponent"] == OVERLAP_GRID[2] and cal["fixed_us_per_layer"] == FIXED_GRID[2]


def test_threads_add_the_rates_of_the_fastest_cores():
    from edgedistill.bench.predict import core_rates, thread_gflops

    phone = load_target("android-snapdragon-8-gen-3")
    rates = core_rates(phone)
    assert rates[0] == max(rates) and len(rates) == phone.cores
    assert thread_gflops(rates, 1) == rates[0] and thread_gflops(rates, 2) == rates[0] + rates[1]
    pi5 = load_target("raspberry-pi-5")  # no core_gflops: the peak shared equally
    assert core_rates(pi5) == [pi5.peak_gflops / 4] * 4
    # a compute-bound 7B on the phone: the second thread adds a slower core's rate, not the prime core's again
    one = predict_speed(_shape(params=6.74e9, weight_bytes=int(3.56 * GIB), layers=32), phone, context=128, threads=1)
    two = predict_speed(_shape(params=6.74e9, weight_bytes=int(3.56 * GIB), layers=32), phone, context=128, threads=2)
    assert one.decode_bound == "compute"
    assert 1.0 < two.predicted_decode_tok_s / one.predicted_decode_tok_s < (rates[0] + rates[1]) / rates[0] + 1e-9


def test_a_power_limited_chip_loses_clock_as_more_cores_work():
    from edgedistill.bench.predict import thread_gflops

    rates = [100.0] * 4
    assert thread_gflops(rates, 1, 0.6) == 100.0  # one core busy: its one-core (turbo) rate
    assert thread_gflops(rates, 4, 0.6) == pytest.approx(4 * 60.0)  # all busy: the sustained all-core clock
    assert thread_gflops(rates, 2, 0.6) == pytest.approx(2 * 100.0 * (1 - 0.4 / 3))  # linear in between
    assert thread_gflops(rates, 4) == 400.0  # no limit by default
    # in the profile: the same 7B on 4 threads of a laptop is predicted slower with the limit than without
    laptop = load_target("x86-laptop")
    shape = _shape(params=6.74e9, weight_bytes=int(3.56 * GIB), layers=32)
    free = predict_speed(shape, laptop, context=128, threads=4)
    limited = predict_speed(shape, dataclasses.replace(laptop, all_core_clock_ratio=0.5), context=128, threads=4)
    assert limited.predicted_decode_tok_s < free.predicted_decode_tok_s


def test_all_core_clock_ratio_is_validated(tmp_path):
    for bad in ("0", "1.5", "fast"):
        with pytest.raises(ConfigError, match="invalid field 'all_core_clock_ratio'"):
            _load_edited(tmp_path, "raspberry-pi-5", "core_class: cortex-a76",
                         f"core_class: cortex-a76\nall_core_clock_ratio: {bad}")


def _load_edited(tmp_path, name: str, old: str, new: str):
    """Load a copy of a built-in profile with one line changed."""
    from edgedistill.targets import load_target_file

    src = Path(load_target(name).source_file).read_text()
    assert old in src
    bad = tmp_path / f"{name}.yaml"
    bad.write_text(src.replace(old, new))
    return load_target_file(bad)


def test_core_gflops_must_list_every_core(tmp_path):
    listed = "core_gflops: [105.6, 50.4, 50.4, 50.4, 47.4, 47.4, 18.2, 18.2]"
    with pytest.raises(ConfigError, match="invalid field 'core_gflops': lists 2 cores; the profile has 8"):
        _load_edited(tmp_path, "android-snapdragon-8-gen-3", listed, "core_gflops: [105.6, 50.4]")
    with pytest.raises(ConfigError, match="invalid field 'core_gflops'"):
        _load_edited(tmp_path, "android-snapdragon-8-gen-3", listed, "core_gflops: fast")


def test_leave_one_out_never_sees_the_judged_device():
    devices, figures = load_figures(FIGURES)
    subset = [f for f in figures if f["device"] in ("raspberry-pi-400", "raspberry-pi-4-2gb", "raspberry-pi-5")]
    before = {(r["device"], r["threads"], r["model"]): r["predicted_tps"] for r in leave_one_device_out(devices, subset)}
    # a wildly different figure for the Pi 400 must not move the Pi 400's own leave-one-out prediction
    changed = [dict(f, decode_tps=f["decode_tps"] * 10) if f["device"] == "raspberry-pi-400" else f for f in subset]
    after = {(r["device"], r["threads"], r["model"]): r["predicted_tps"] for r in leave_one_device_out(devices, changed)}
    pi400 = [k for k in before if k[0] == "raspberry-pi-400"]
    assert pi400 and all(before[k] == pytest.approx(after[k]) for k in pi400)
    assert any(before[k] != pytest.approx(after[k]) for k in before if k[0] == "raspberry-pi-4-2gb")


def test_every_published_figure_names_its_source_and_the_committed_calibration_is_current():
    devices, figures = load_figures(FIGURES)
    assert len({devices[f["device"]]["core_class"] for f in figures}) >= 4
    assert all(f["source"].startswith("https://") for f in figures)
    cal = fit(devices, figures)
    assert cal["fixed_us_per_layer"] == CALIBRATION["fixed_us_per_layer"]
    assert cal["overlap_exponent"] == CALIBRATION["overlap_exponent"]
    for cls, entry in cal["classes"].items():
        assert CALIBRATION["classes"][cls]["bw_efficiency"] == entry["bw_efficiency"], "rerun benchmarks/predict_calibration.py --write"
        assert CALIBRATION["classes"][cls]["compute_efficiency"] == entry["compute_efficiency"]


def test_core_class_name_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="invalid field 'core_class'"):
        _load_edited(tmp_path, "raspberry-pi-5", "core_class: cortex-a76", "core_class: 'Cortex A76!'")


def test_cv_flag_names_the_figure_that_tripped_it():
    from edgedistill.bench.harness import summarize
    from edgedistill.bench.report import markdown_table

    samples = [{"ttft_s": t, "prefill_tps": 100.0, "decode_tps": 50.0, "itl_s": [0.02], "gen_tokens": 8}
               for t in (0.1, 0.2, 0.1, 0.3)]  # steady decode, noisy TTFT
    row = summarize({"samples": samples}, cv_threshold=0.10)
    assert row["high_cv"] is True and row["decode_cv"] == 0
    assert row["high_cv_of"].startswith("TTFT CV ")
    md = markdown_table([{**row, "artifact": "a", "target": "host", "label": "measured", "status": "ok"}])
    assert "0.0% ⚠ high (TTFT CV" in md


def test_bench_predicted_row_is_labelled_and_kept_out_of_measurements():
    from edgedistill.bench.harness import _predicted_row

    base = {"artifact": "a", "target": "raspberry-pi-5", "prompt_len": 128}
    [row] = _predicted_row(base, _shape(), load_target("raspberry-pi-5"), "llama.cpp", 64)
    assert row["label"] == "predicted" and row["status"] == "predicted" and row["prompt_len"] is None
    assert row["decode_tps_low"] <= row["decode_tps"] <= row["decode_tps_high"]
    assert row["note"].startswith("core class cortex-a76")
    assert _predicted_row(base, _shape(), load_target("raspberry-pi-5"), "torch", 64) == []  # no calibration: no row


def test_targets_probe_records_load_average(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgedistill.bench import bandwidth
    from edgedistill.cli import main

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))
    monkeypatch.setattr(bandwidth, "measure_bandwidth", lambda: 12.345)
    monkeypatch.setattr(bandwidth, "measure_gflops", lambda: 99.9)
    monkeypatch.setattr(bandwidth, "_loadavg", lambda: [7.0, 3.0, 1.0])
    r = CliRunner().invoke(main, ["targets", "probe"])
    assert r.exit_code == 0, r.output
    assert "bandwidth 12.35 GB/s" in r.output and "load average before [7.0, 3.0, 1.0]" in r.output
    assert "probe taken under load" in r.output
    cached = bandwidth.host_probe()  # the refreshed value is what later loads see
    assert cached["bandwidth_gbs"] == 12.35 and cached["loadavg_after"] == [7.0, 3.0, 1.0]
    assert bandwidth.probe_under_load({**cached, "loadavg_before": [0.1, 0, 0], "loadavg_after": [0.2, 0, 0]}) is None
