"""GGUF/ONNX benches through their runtimes, and the ssh / adb transports.

The ssh end-to-end test (marked integration) starts a real OpenSSH server on 127.0.0.1 with throwaway
keys. There is no Android device here: the adb test puts a fake ``adb`` on PATH that records every
command and executes the pushed runner locally, so it checks the commands and the round trip, not a phone.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from edgedistill.bench import BenchConfig, bench
from edgedistill.bench.transports import TRANSPORTS, SshTransport, make_transport
from edgedistill.errors import EdgeDistillError
from edgedistill.targets import TRANSPORT_KINDS, TransportSettings

REPO_TARGETS = Path(__file__).resolve().parents[1] / "targets"
FAST = dict(prompt_lens=[8], gen_len=4, warmup=1, min_reps=2, min_duration_s=0.0, max_reps=2, progress=False)


def _export(model_dir: Path, out: Path, fmt: str, quant: str) -> Path:
    import edgedistill.export  # noqa: F401  (registers the formats)
    from edgedistill.export.formats import FORMATS, ExportOptions

    out.mkdir(parents=True)
    FORMATS.get(fmt).write(Path(model_dir), out, quant, ExportOptions())
    return out


@pytest.fixture(scope="module")
def tiny_gguf(tiny_llama, tmp_path_factory):
    pytest.importorskip("llama_cpp")
    return _export(tiny_llama, tmp_path_factory.mktemp("gguf") / "tiny-gguf-q8_0", "gguf", "q8_0")


def _profile(d: Path, name: str, transport: dict, **changes) -> None:
    data = yaml.safe_load((REPO_TARGETS / "raspberry-pi-5.yaml").read_text())
    data.update(name=name, threads=1, cpu_big_cores=1, transport=transport, **changes)
    (d / f"{name}.yaml").write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("impl", ["auto", "standalone"])
def test_bench_gguf_through_llama_cpp(tiny_gguf, tmp_path, impl):
    report = bench(BenchConfig(artifacts=[str(tiny_gguf)], targets=["host"], impl=impl, out=str(tmp_path), **FAST))
    row = next(r for r in report.rows if r["label"] == "measured")
    assert row["status"] == "ok", row
    assert row["runtime"] == "llama.cpp" and row["impl"] == ("edgedistill" if impl == "auto" else "standalone")
    assert row["decode_tps"] > 0 and row["peak_rss_mb"] > 0
    if impl == "standalone":  # the stand-alone adapter ignores EOS: exactly gen_len tokens
        assert row["gen_tokens"] == 4


@pytest.mark.slow
def test_bench_onnx_through_onnxruntime(tiny_llama, tmp_path):
    art = _export(tiny_llama, tmp_path / "tiny-onnx-fp32", "onnx", "fp32")
    report = bench(BenchConfig(artifacts=[str(art)], targets=["host", "raspberry-pi-4"], out=str(tmp_path / "o"), **FAST))
    # three kinds of row, never mixed: measured here (host / host-emulated), projected ceilings, predictions
    measured = [r for r in report.rows if r["label"] in ("measured", "host-emulated")]
    assert sorted((r["target"], r["label"], r["status"]) for r in measured) == [
        ("host", "measured", "ok"), ("raspberry-pi-4", "host-emulated", "ok")], measured
    assert all(r["runtime"] == "onnxruntime" and r["decode_tps"] > 0 for r in measured)
    computed = [r for r in report.rows if r not in measured]
    assert {r["label"] for r in computed} <= {"projected", "predicted"}
    # the Pi 4 profile has every figure the predictor needs: its prediction is there, labelled as one
    [pi4] = [r for r in computed if r["label"] == "predicted" and r["target"] == "raspberry-pi-4"]
    assert pi4["status"] == "predicted" and pi4["decode_tps_low"] <= pi4["decode_tps"] <= pi4["decode_tps_high"]


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["auto", "standalone"])
def test_bench_ort_genai(tiny_llama, tmp_path, impl):
    pytest.importorskip("onnxruntime_genai")
    art = _export(tiny_llama, tmp_path / "tiny-ort-genai-fp32", "ort-genai", "fp32")
    report = bench(BenchConfig(artifacts=[str(art)], targets=["host"], impl=impl, out=str(tmp_path / "o"), **FAST))
    row = next(r for r in report.rows if r["label"] == "measured")
    assert row["status"] == "ok", row.get("error")
    assert row["runtime"] == "ort-genai" and row["decode_tps"] > 0


# -- adb (fake) ------------------------------------------------------------------------------------
FAKE_ADB = r'''#!{python}
"""Fake adb: records argv, maps /data/local/tmp to a local folder, runs 'shell' commands with bash."""
import json, os, shutil, subprocess, sys
root, log = os.environ["FAKE_ADB_ROOT"], os.environ["FAKE_ADB_LOG"]
args = sys.argv[1:]
with open(log, "a") as fh:
    fh.write(json.dumps(args) + "\n")
if args[:1] == ["-s"]:
    args = args[2:]
local = lambda p: p.replace("/data/local/tmp", root)
if args[0] == "push":
    src, dst = args[1], local(args[2])
    if os.path.isdir(src):
        shutil.copytree(src, os.path.join(dst, os.path.basename(src)), dirs_exist_ok=True)
    else:
        shutil.copy(src, dst if not dst.endswith("/") else os.path.join(dst, os.path.basename(src)))
    if dst.endswith(".json"):  # keep what the phone would get; the local copy gets local paths
        shutil.copy(dst, dst + ".device")
        with open(dst) as fh:
            text = fh.read()
        with open(dst, "w") as fh:
            fh.write(local(text))
    print(f"{src}: 1 file pushed")
elif args[0] == "shell":
    cmd = local(args[1])
    # this host has no CPUs 2-7: drop the taskset the phone would run, use this venv's python
    cmd = cmd.replace("taskset fc ", "").replace(" python3 ", " {python} ")
    sys.exit(subprocess.call(["bash", "-c", cmd]))
'''


def test_adb_transport_with_a_fake_adb(tiny_gguf, tmp_path, monkeypatch):
    bindir, root = tmp_path / "bin", tmp_path / "device"
    bindir.mkdir(), root.mkdir()
    (bindir / "adb").write_text(FAKE_ADB.replace("{python}", sys.executable))
    (bindir / "adb").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.setenv("FAKE_ADB_LOG", str(tmp_path / "adb.log"))
    tdir = tmp_path / "targets"
    tdir.mkdir()
    _profile(tdir, "phone", {"kind": "adb", "serial": "R5CX123", "cpu_mask": "fc", "remote_dir": "/data/local/tmp/eb"})
    report = bench(BenchConfig(artifacts=[str(tiny_gguf)], targets=["phone"], targets_dir=str(tdir), mode="device",
                               impl="standalone", out=str(tmp_path / "out"), **{**FAST, "prompt_lens": [8, 12]}))
    rows = [r for r in report.rows if r["label"] == "device"]
    assert [r["status"] for r in rows] == ["ok", "ok"], [r.get("error") for r in rows]
    assert all(r["impl"] == "standalone" and r["decode_tps"] > 0 for r in rows)
    calls = [json.loads(x) for x in (tmp_path / "adb.log").read_text().splitlines()]
    assert all(c[:2] == ["-s", "R5CX123"] for c in calls)
    assert calls[0][2:] == ["shell", "mkdir -p /data/local/tmp/eb"]
    # the artifact is pushed once for the whole prompt-length sweep
    assert [c[2:] for c in calls].count(["push", str(tiny_gguf), "/data/local/tmp/eb/"]) == 1
    assert calls[-1][2:] == ["shell", "cd /data/local/tmp/eb && taskset fc python3 runner.py --spec spec.json"]
    spec = json.loads((root / "eb" / "spec.json.device").read_text())
    assert spec["artifact"] == "/data/local/tmp/eb/tiny-gguf-q8_0"
    assert spec["main_file"] == "/data/local/tmp/eb/tiny-gguf-q8_0/model.gguf"


def test_adb_missing_is_a_clear_error(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb anywhere
    tdir = tmp_path / "targets"
    tdir.mkdir()
    _profile(tdir, "phone", {"kind": "adb"})
    with pytest.raises(EdgeDistillError, match="adb not found"):
        bench(BenchConfig(artifacts=[str(tiny_gguf)], targets=["phone"], targets_dir=str(tdir), mode="device", out="", **FAST))


# -- ssh ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ssh_refused_is_a_clear_error(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    t = SshTransport(TransportSettings(kind="ssh", host="127.0.0.1", port=_free_port(), user="nobody",
                                       known_hosts=str(kh), connect_timeout_s=3), timeout_s=20)
    with pytest.raises(EdgeDistillError, match="ssh to nobody@127.0.0.1 port .* failed while creating the remote directory: .*refused"):
        t.run({"artifact": str(tmp_path), "main_file": str(tmp_path / "x"), "threads": 1})


def test_ssh_silent_host_times_out(tmp_path):
    """A host that accepts TCP but never speaks SSH: a bounded wait, then a clear message."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    port = srv.getsockname()[1]
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    t = SshTransport(TransportSettings(kind="ssh", host="127.0.0.1", port=port, user="nobody",
                                       known_hosts=str(kh), connect_timeout_s=2), timeout_s=20)
    start = time.monotonic()
    try:
        with pytest.raises(EdgeDistillError, match="timed out"):
            t.run({"artifact": str(tmp_path), "main_file": str(tmp_path / "x"), "threads": 1})
    finally:
        srv.close()
    assert time.monotonic() - start < 20


SSHD_CONFIG = """Port {port}
ListenAddress 127.0.0.1
HostKey {hostkey}
AuthorizedKeysFile {authkeys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin yes
PidFile {dir}/sshd.pid
Subsystem sftp internal-sftp
LoginGraceTime 30
"""


@pytest.fixture
def sshd(tmp_path):
    """A real OpenSSH server on 127.0.0.1 with throwaway host and client keys."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd_bin).exists():
        pytest.skip("OpenSSH server not installed (apt-get install -y openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("the test sshd runs as root (it must switch to the login user)")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("hostkey", "clientkey"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "clientkey.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(SSHD_CONFIG.format(port=port, hostkey=d / "hostkey", authkeys=d / "authorized_keys", dir=d))
    host_pub = (d / "hostkey.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation directory sshd insists on
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            pytest.fail(f"sshd exited: {''.join(log)}")
        time.sleep(0.1)
    yield {"port": port, "dir": d, "log": log}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.integration
def test_ssh_end_to_end_against_a_real_sshd(sshd, tiny_gguf, tmp_path):
    d = sshd["dir"]
    # the remote python cannot import edgedistill: the runner must work with only the runtime package
    blocker = tmp_path / "no_edgedistill.py"
    blocker.write_text("import runpy, sys\nsys.modules['edgedistill'] = None\nsys.argv = sys.argv[1:]\n"
                       "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    remote = tmp_path / "remote"
    transport = {"kind": "ssh", "host": "127.0.0.1", "port": sshd["port"], "user": getpass.getuser(),
                 "key": str(d / "clientkey"), "known_hosts": str(d / "known_hosts"), "remote_dir": str(remote),
                 "python": f"{sys.executable} {blocker}", "connect_timeout_s": 10}
    tdir = tmp_path / "targets"
    tdir.mkdir()
    _profile(tdir, "board", transport)
    report = bench(BenchConfig(artifacts=[str(tiny_gguf)], targets=["board"], targets_dir=str(tdir), mode="device",
                               out=str(tmp_path / "out"), **FAST))
    row = next(r for r in report.rows if r["label"] == "device")
    assert row["status"] == "ok", (row, "".join(sshd["log"]))
    assert row["impl"] == "standalone" and row["decode_tps"] > 0 and row["gen_tokens"] == 4
    assert (remote / "runner.py").exists() and (remote / tiny_gguf.name / "model.gguf").exists()

    # a wrong host key is refused: host-key checking is on
    (d / "known_hosts").write_text(f"[127.0.0.1]:{sshd['port']} " + (d / "clientkey.pub").read_text())
    with pytest.raises(EdgeDistillError, match="failed while creating the remote directory"):
        bench(BenchConfig(artifacts=[str(tiny_gguf)], targets=["board"], targets_dir=str(tdir), mode="device", out="", **FAST))


# -- none --------------------------------------------------------------------------------------------
def test_no_transport_refuses_device_mode(tiny_gguf, tmp_path):
    """A profile that cannot be reached (kind none) is refused before anything runs, and its transport
    refuses too if called directly."""
    tdir = tmp_path / "targets"
    tdir.mkdir()
    _profile(tdir, "sealed", {"kind": "none"})
    with pytest.raises(EdgeDistillError, match="target sealed has no transport"):
        bench(BenchConfig(artifacts=[str(tiny_gguf)], targets=["sealed"], targets_dir=str(tdir), mode="device",
                          out="", **FAST))
    with pytest.raises(EdgeDistillError, match=r"has no transport \(transport.kind: none\)"):
        make_transport(TransportSettings(kind="none")).run({"artifact": str(tiny_gguf)})


# -- every registered transport has a case -----------------------------------------------------------
# A transport registered without a row here fails test_every_transport_has_a_case: the tests of this
# module that run it, at least one of them in the default run (not slow / integration).
TRANSPORT_CASES = {
    "local": ["test_bench_gguf_through_llama_cpp", "test_bench_onnx_through_onnxruntime", "test_bench_ort_genai"],
    "ssh": ["test_ssh_refused_is_a_clear_error", "test_ssh_silent_host_times_out",
            "test_ssh_end_to_end_against_a_real_sshd"],
    "adb": ["test_adb_transport_with_a_fake_adb", "test_adb_missing_is_a_clear_error"],
    "none": ["test_no_transport_refuses_device_mode"],
}


@pytest.mark.parametrize("kind", TRANSPORTS.names())
def test_every_transport_has_a_case(kind):
    assert kind in TRANSPORT_CASES, f"transport {kind!r} is registered but has no case here (tests that run it)"
    tests = [globals().get(name) for name in TRANSPORT_CASES[kind]]
    assert all(callable(t) for t in tests), f"{kind}: a listed test does not exist: {TRANSPORT_CASES[kind]}"
    default_run = [t for t in tests
                   if not {m.name for m in getattr(t, "pytestmark", [])} & {"slow", "integration"}]
    assert default_run, f"transport {kind!r} is only tested outside the default run"
    settings = TransportSettings(kind=kind, host="device.local", known_hosts=os.devnull)
    settings.validate(f"profile with transport {kind!r}")  # a device profile may name it
    assert type(make_transport(settings)) is TRANSPORTS.get(kind)


def test_profiles_accept_exactly_the_registered_transports():
    assert set(TRANSPORT_KINDS) == set(TRANSPORTS.names())
