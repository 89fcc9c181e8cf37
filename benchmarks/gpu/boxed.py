"""Run a command inside a time box, in its own process group, so that a launcher stopped at the end
of its box takes its workers with it (an orphaned worker would keep the GPU's memory)."""

from __future__ import annotations

import os
import signal
import subprocess


def run_boxed(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, text=True) that kills the whole group at ``timeout``
    seconds (at least 1) and then raises subprocess.TimeoutExpired."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **kw) as proc:
        try:
            out, err = proc.communicate(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
