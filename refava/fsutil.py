"""Small file-system helpers: atomic writes, content hashes and path-safe ids."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
# who made a temporary file: host and PID, so a later run can tell a dead run's leftovers from a live one's
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
OWNER_RE = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)~(?P<pid>[0-9]+)\.")


def owner() -> str:
    """``HOST~PID`` of this process, for the names of its temporary files (read at use: a child has its own PID)."""
    return f"{HOST}~{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True                      # no /proc (not Linux): the signal test is all there is
    return state not in ("Z", "X")


def stale(name: str) -> bool:
    """Whether a temporary file's name says a dead process on this machine made it (``.x.HOST~PID.abc.tmp``).

    Names without an owner were written before refava named owners, and are stale too; files of other machines
    (a shared filesystem) are never called stale here.
    """
    match = OWNER_RE.search(name)
    if match is None:
        return True
    return match["host"] == HOST and not pid_alive(int(match["pid"]))


def clean_stale_temporaries(root: str | os.PathLike,
                            folders=("tables", "frames", "cache", "reports", "labelstudio")) -> list[Path]:
    """Delete the temporary files (``.*.tmp``) that dead refava runs left under ``root``'s ``folders``; returns
    them.  Files of live runs, and of other machines, are kept.  Errors (a read-only workspace) are ignored."""
    removed = []
    for folder in folders:
        base = Path(root) / folder
        if not base.is_dir():
            continue
        for path in base.rglob(".*.tmp"):
            if path.is_file() and stale(path.name):
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error it is removed.

    >>> with atomic_path("table.parquet") as tmp:   # doctest: +SKIP
    ...     write_something(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except OSError as exc:
        written = tmp_path.stat().st_size if tmp_path.exists() else 0
        tmp_path.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, written) from exc
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def disk_full(path: Path, written: int = 0):
    """A :class:`DiskFullError` for a write of ``path`` that failed after ``written`` bytes."""
    from .errors import DiskFullError

    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = 0
    need = f"more than {_size(written)} for this file alone" if written else "room for this file"
    return DiskFullError(f"no space left on the device while writing {path} ({_size(free)} free there). Kept: "
                         f"everything finished before (each file is written whole or not at all; the partial "
                         f"{path.name} was removed). Needed: {need}. Free some space (or move the workspace) and "
                         f"rerun the same command: it resumes where it stopped")


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
