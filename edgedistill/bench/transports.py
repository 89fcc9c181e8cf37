"""Where a benchmark run executes: here (``local``), a Linux board (``ssh``), an Android phone (``adb``).

Every transport runs the same self-contained ``runner.py`` with a JSON spec and reads back the
``EDGEDISTILL_RESULT`` line. Remote transports copy the artifact and the runner first; the device needs
Python and the runtime package, not edgedistill. SSH always checks host keys
(``StrictHostKeyChecking=yes`` against the profile's ``known_hosts``) and never prompts (``BatchMode``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable

from edgedistill.bench import runner as runner_module
from edgedistill.errors import EdgeDistillError
from edgedistill.registry import Registry
from edgedistill.targets import TransportSettings

TRANSPORTS: Registry[type] = Registry("transport")
RUNNER_FILE = Path(runner_module.__file__)


def parse_runner_output(stdout: str, stderr: str, returncode: int, where: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith(runner_module.RESULT_MARK):
            return json.loads(line[len(runner_module.RESULT_MARK):])
    tail = (stderr or stdout).strip()[-1500:]
    if returncode in (-9, 137):
        return {"status": "does-not-fit", "error": f"the benchmark process was killed (SIGKILL, likely out of memory) {where}"}
    return {"status": "error", "error": f"the runner {where} exited with status {returncode} and no result: {tail}"}


class Transport:
    def __init__(self, settings: TransportSettings, timeout_s: float = 1800):
        self.settings = settings
        self.timeout_s = timeout_s
        self._copied: set[str] = set()  # artifacts already on the device in this session

    def run(self, spec: dict) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        """Remove what was copied to the device (a no-op locally)."""

    def _on_device(self, spec: dict, copy: Callable[[Path, str], None]) -> dict:
        """``spec`` with the artifact's paths as the device sees them, after ``copy(artifact, remote_dir)``
        has put the artifact and the runner there (once a session: later runs reuse the copy)."""
        rdir = self.settings.remote_dir
        art = Path(spec["artifact"])
        remote_art = f"{rdir}/{art.name}"
        if str(art) not in self._copied:
            copy(art, rdir)
            self._copied.add(str(art))
        return dict(spec, artifact=remote_art, main_file=_remap(spec["main_file"], art, remote_art))


@TRANSPORTS.register("local")
class LocalTransport(Transport):
    """A fresh ``python -m edgedistill.bench.runner`` subprocess on this machine."""

    def run(self, spec: dict) -> dict:
        env = dict(os.environ)
        threads = str(spec["threads"])
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
                   TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        try:
            p = subprocess.run([sys.executable, "-m", "edgedistill.bench.runner"], input=json.dumps(spec),
                               capture_output=True, text=True, timeout=self.timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return {"status": "error", "error": f"the run took longer than {self.timeout_s:.0f} s and was stopped"}
        return parse_runner_output(p.stdout, p.stderr, p.returncode, "on this host")


@TRANSPORTS.register("ssh")
class SshTransport(Transport):
    """OpenSSH client subprocesses (``ssh``/``scp``); key-based, host key checked, never prompts."""

    def _opts(self) -> list[str]:
        s = self.settings
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={os.path.expanduser(s.known_hosts)}",
                "-o", f"ConnectTimeout={s.connect_timeout_s}", "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR"]
        if s.key:
            opts += ["-i", os.path.expanduser(s.key), "-o", "IdentitiesOnly=yes"]
        return opts

    @property
    def _dest(self) -> str:
        s = self.settings
        return f"{s.user}@{s.host}" if s.user else s.host

    def _call(self, argv: list[str], what: str, input: str | None = None, timeout: float | None = None):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, input=input,
                               timeout=timeout or self.timeout_s)
        except FileNotFoundError:
            raise EdgeDistillError(f"{argv[0]} not found; the ssh transport needs the OpenSSH client") from None
        except subprocess.TimeoutExpired:
            raise EdgeDistillError(
                f"ssh to {self._dest} port {self.settings.port} timed out while {what}",
                hint="check that the device is on, reachable, and that connect_timeout_s is long enough") from None
        if p.returncode == 255 or (argv[0] == "scp" and p.returncode != 0):
            err = p.stderr.strip().splitlines()
            raise EdgeDistillError(
                f"ssh to {self._dest} port {self.settings.port} failed while {what}: {err[-1] if err else 'no message'}",
                hint="check host, port, user and key; the host key must already be in "
                     f"{self.settings.known_hosts} (ssh-keyscan -p PORT HOST >> that file, after verifying it)")
        return p

    def _ssh(self, command: str, what: str, input: str | None = None, timeout: float | None = None):
        return self._call(["ssh", *self._opts(), "-p", str(self.settings.port), self._dest, command],
                          what, input=input, timeout=timeout)

    def _copy(self, art: Path, rdir: str) -> None:
        s = self.settings
        self._ssh(f"mkdir -p {shlex.quote(rdir)}", "creating the remote directory", timeout=s.connect_timeout_s + 10)
        scp = ["scp", *self._opts(), "-P", str(s.port), "-q"]
        self._call([*scp, "-r", str(art), str(RUNNER_FILE), f"{self._dest}:{rdir}/"], "copying the artifact and runner")

    def run(self, spec: dict) -> dict:
        s = self.settings
        rdir = s.remote_dir
        spec = self._on_device(spec, self._copy)
        cmd = f"cd {shlex.quote(rdir)} && OMP_NUM_THREADS={int(spec['threads'])} {_python_cmd(s.python)} runner.py"
        p = self._ssh(cmd, "running the benchmark", input=json.dumps(spec))
        return parse_runner_output(p.stdout, p.stderr, p.returncode, f"on {self._dest}")


@TRANSPORTS.register("adb")
class AdbTransport(Transport):
    """``adb push`` to /data/local/tmp and ``adb shell taskset MASK python3 runner.py --spec FILE``."""

    def _adb(self, *args: str, what: str) -> subprocess.CompletedProcess:
        argv = ["adb", *(["-s", self.settings.serial] if self.settings.serial else []), *args]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s)
        except FileNotFoundError:
            raise EdgeDistillError("adb not found on PATH; install Android platform-tools") from None
        except subprocess.TimeoutExpired:
            raise EdgeDistillError(f"adb timed out while {what}") from None
        if p.returncode != 0 and args[0] != "shell":
            raise EdgeDistillError(f"adb failed while {what}: {(p.stderr or p.stdout).strip()[-500:]}",
                                   hint="is the phone attached with USB debugging on? (adb devices)")
        return p

    def _push(self, art: Path, rdir: str) -> None:
        self._adb("shell", f"mkdir -p {shlex.quote(rdir)}", what="creating the remote directory")
        self._adb("push", str(art), f"{rdir}/", what="pushing the artifact")
        self._adb("push", str(RUNNER_FILE), f"{rdir}/runner.py", what="pushing the runner")

    def run(self, spec: dict) -> dict:
        s = self.settings
        rdir = s.remote_dir
        spec = dict(self._on_device(spec, self._push), cpus=None)
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(spec, fh)
        try:
            self._adb("push", fh.name, f"{rdir}/spec.json", what="pushing the run spec")
        finally:
            os.unlink(fh.name)
        pin = f"taskset {shlex.quote(s.cpu_mask)} " if s.cpu_mask else ""
        cmd = f"cd {shlex.quote(rdir)} && {pin}{_python_cmd(s.python)} runner.py --spec spec.json"
        p = self._adb("shell", cmd, what="running the benchmark")
        return parse_runner_output(p.stdout, p.stderr, p.returncode, "on the Android device")


@TRANSPORTS.register("none")
class NoTransport(Transport):
    def run(self, spec: dict) -> dict:
        raise EdgeDistillError("this target has no transport (transport.kind: none); only host emulation and projection are possible",
                               hint="drop --on-device for this target")


def _python_cmd(python: str) -> str:
    """The profile's python setting may be a command line ("python3 -X utf8"); quote each word."""
    return shlex.join(shlex.split(python))


def _remap(main_file: str, art: Path, remote_art: str) -> str:
    mf = Path(main_file)
    if mf == art:
        return remote_art
    try:
        return f"{remote_art}/{mf.relative_to(art).as_posix()}"
    except ValueError:
        return f"{remote_art}/{mf.name}"


def make_transport(settings: TransportSettings, timeout_s: float = 1800) -> Transport:
    return TRANSPORTS.get(settings.kind)(settings, timeout_s)
