"""Writing output so that a crash, a kill -9 or a full disk never leaves half-written artifacts.

- :func:`atomic_write_text` / :func:`atomic_write_bytes`: write to a temp file in the same directory,
  fsync, rename over the target.
- :func:`atomic_dir`: build a whole directory under a temporary name and rename it into place.
- :class:`JsonlAppender` + :func:`read_jsonl_records`: append-only JSONL for resumable jobs; every
  line is flushed whole, and a torn last line (from a kill mid-write) is dropped on resume.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from edgedistill.errors import EdgeDistillError


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_error(path: Path, exc: OSError) -> EdgeDistillError:
    if exc.errno == errno.ENOSPC:
        return EdgeDistillError(
            f"no space left on the device while writing {path}; nothing was left half-written",
            hint="free some disk space or choose another --out directory, then rerun",
        )
    return EdgeDistillError(f"could not write {path}: {exc.strerror or exc}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _disk_error(path, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``final``; on success it replaces ``final``.

    On any exception (including KeyboardInterrupt) the temporary directory is removed and ``final``
    is untouched. The temp name starts with '.' and ends with '.partial' so a leftover from a
    kill -9 is easy to recognise; :func:`clean_partials` removes those.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise EdgeDistillError(f"{final} already exists", hint="remove it or pass --overwrite")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _disk_error(final, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes.

    For work that several processes may start at once, e.g. the ranks of ``accelerate launch`` all
    importing the same .gguf on first use: the first does it, the others wait and then find it done.
    POSIX ``flock``; where that does not exist (Windows) it does not lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def clean_partials(directory: str | os.PathLike) -> list[Path]:
    """Remove '.NAME.*.partial' leftovers of killed runs in ``directory``; returns what was removed."""
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for p in directory.glob(".*.partial"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


class JsonlAppender:
    """Append JSON records one whole line at a time, flushed and fsynced, for resumable jobs.

    A kill -9 can at worst leave a torn last line; the constructor truncates such a line away
    before appending so the file stays valid JSONL.
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        _truncate_torn_tail(self.path)
        self._fh = open(self.path, "ab")

    def write(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        try:
            self._fh.write(line)
            self._fh.flush()
            if self._fsync:
                os.fsync(self._fh.fileno())
        except OSError as exc:
            raise _disk_error(self.path, exc) from exc

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _truncate_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1  # 0 when the only line is torn
        fh.truncate(cut)


def read_jsonl_records(path: str | os.PathLike) -> list[dict]:
    """Records of a JSONL file written by :class:`JsonlAppender`, ignoring a torn last line."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # torn tail from an interrupted write: drop it
                continue
            raise EdgeDistillError(f"{path}:{i + 1}: not valid JSON; the file is corrupt") from None
    return out
