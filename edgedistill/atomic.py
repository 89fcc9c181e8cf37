"""Writing output so that a crash, a kill -9 or a full disk never leaves half-written artifacts.

- :func:`atomic_write_text` / :func:`atomic_write_bytes`: write to a temp file in the same directory,
  fsync, rename over the target.
- :func:`atomic_dir`: build a whole directory under a temporary name and rename it into place; an
  existing directory is only ever replaced when it is an earlier edgedistill output
  (:func:`check_output_dir`): a user's own files are never deleted.
- :class:`JsonlAppender` + :func:`read_jsonl_records`: append-only JSONL for resumable jobs; every
  line is flushed whole, and a torn last line (from a kill mid-write) is dropped on resume.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
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


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; set straight back
    os.umask(mask)
    return mask


def default_mode(directory: bool) -> int:
    """The mode ``open``/``mkdir`` would give under the user's umask (mkstemp/mkdtemp make 0600/0700,
    which would hide artifacts from a serving process or a teammate)."""
    return (0o777 if directory else 0o666) & ~_umask()


def apply_umask(tree: Path) -> None:
    """Give every file and directory under ``tree`` the mode the umask gives a new one (execute bits
    kept). Libraries that write through their own temp files (safetensors: 0600) would otherwise leave
    weights that a serving process or a teammate cannot read."""
    for p in [tree, *tree.rglob("*")]:
        if p.is_symlink():
            continue
        is_dir = p.is_dir()
        old = stat.S_IMODE(p.stat().st_mode)
        os.chmod(p, default_mode(is_dir) | (0 if is_dir else old & 0o111 & ~_umask()))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, default_mode(directory=False))
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


def _probe_dir(directory: Path, what: str) -> None:
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise EdgeDistillError(f"{what} cannot be written: {existing} is a file, not a directory",
                               hint="choose a path inside a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edgedistill-", suffix=".probe", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EdgeDistillError(f"{what} cannot be written: {exc.strerror or exc} ({directory})",
                               hint="choose a writable location") from None


def check_writable_file(path: str | os.PathLike, option: str = "--out") -> None:
    """Fail now, before any model loads, when the file ``path`` could not be written (or appended to)."""
    path = Path(path)
    if path.is_dir():
        raise EdgeDistillError(f"{option} {path} is a directory; give a file path")
    _probe_dir(path.parent, f"{option} {path}")
    if path.exists():
        try:
            with open(path, "ab"):  # opening for append changes nothing in it
                pass
        except OSError as exc:
            raise EdgeDistillError(f"{option} {path} cannot be written: {exc.strerror or exc}",
                                   hint="choose a writable file or fix its permissions") from None


def check_writable_dir(path: str | os.PathLike, option: str = "--out") -> None:
    """Fail now, before anything is measured, when results could not be written into the directory ``path``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgeDistillError(f"{option} {path} is an existing file, not a directory",
                               hint=f"give {option} a directory path")
    _probe_dir(path, f"{option} {path}")


def check_output_dir(final: str | os.PathLike, made_by: tuple[str, ...], overwrite: bool = False,
                     same_run: bool = False, option: str = "--out") -> None:
    """Refuse to write the directory ``final`` over anything but an earlier edgedistill output.

    ``final`` may be missing or empty. A non-empty directory is replaced only when it holds one of the
    ``made_by`` files (what this command writes, e.g. ``manifest.json``) *and* either ``overwrite`` is
    set or ``same_run`` (the caller found it to be the output of this very run, being redone). A
    directory without those files is a user's and is refused even with ``overwrite``.
    """
    final = Path(final)
    if not final.exists():
        return
    if not final.is_dir():
        raise EdgeDistillError(f"{option} {final} is an existing file, not a directory",
                               hint=f"give {option} a directory path")
    entries = sorted(p.name for p in final.iterdir())
    if not entries:
        return
    if not any((final / m).exists() for m in made_by):
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise EdgeDistillError(
            f"{option} {final} is not empty (holds {shown}) and is not an earlier edgedistill output; "
            "nothing in it was touched",
            hint=f"choose a new or empty directory for {option}",
        )
    if not (overwrite or same_run):
        raise EdgeDistillError(f"{option} {final} holds an earlier edgedistill output made with other settings",
                               hint="pass --overwrite (overwrite: true) to replace it, or choose another directory")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False, made_by: tuple[str, ...] = (),
               same_run: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``final``; on success it replaces ``final``.

    ``final`` is checked first with :func:`check_output_dir` (``made_by``, ``overwrite``, ``same_run``),
    so only an earlier edgedistill output is ever replaced. On any exception (including
    KeyboardInterrupt) the temporary directory is removed and ``final`` is untouched. The temp name
    starts with '.' and ends with '.partial' so a leftover from a kill -9 is easy to recognise;
    :func:`clean_partials` removes those. Everything in the new directory gets the user's umask
    (not mkdtemp's 0700 or a library's 0600).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    check_output_dir(final, made_by, overwrite, same_run)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        apply_umask(tmp)
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
