"""``refava download``: fetch AVA movies, in parallel, resumable (HTTP Range), atomic and verified.

A file is downloaded to ``.<name>.part`` beside its final name and renamed only when its size equals the
server's Content-Length (and its checksum matches, when a checksum list is given).  A dropped connection resumes
from the bytes already on disk; a server that ignores Range restarts the file.  Failures are collected and
summarised, never skipped silently.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import DownloadError
from .fsutil import SAFE_ID

CHUNK = 1 << 16


@dataclass
class FileOutcome:
    name: str
    status: str  # "downloaded", "exists", "failed"
    bytes: int = 0
    resumed_from: int = 0
    attempts: int = 0
    error: str = ""


@dataclass
class DownloadResult:
    outcomes: list[FileOutcome] = field(default_factory=list)
    out_dir: Path = Path(".")
    seconds: float = 0.0

    @property
    def failed(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def summary_lines(self) -> list[str]:
        counts = {s: sum(o.status == s for o in self.outcomes) for s in ("downloaded", "exists", "failed")}
        total = sum(o.bytes for o in self.outcomes if o.status == "downloaded")
        lines = [f"download: {counts['downloaded']} downloaded ({total / 1e6:.1f} MB), {counts['exists']} already "
                 f"complete, {counts['failed']} failed, in {self.seconds:.1f} s -> {self.out_dir}"]
        for o in self.failed:
            lines.append(f"  FAILED {o.name}: {o.error} (after {o.attempts} attempts; rerun to resume)")
        return lines


def load_checksums(path: str | os.PathLike) -> dict[str, str]:
    """Read a ``<hex digest>  <file name>`` list (md5sum / sha256sum output) into {name: digest}."""
    from .io import InputError, iter_lines, quote

    path = Path(path)
    out = {}
    try:
        lines = list(iter_lines(path, what="checksum list", max_line_bytes=1 << 12))
    except InputError as exc:
        raise DownloadError(str(exc)) from None
    for line_no, line in lines:
        line = line.rstrip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) not in (32, 64):
            raise DownloadError(f"{path.name} line {line_no}: expected '<md5 or sha256 hex>  <file name>', found "
                                f"{quote(line)}")
        out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def _digest(path: Path, hexlen: int) -> str:
    h = hashlib.md5() if hexlen == 32 else hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_name(name: str) -> None:
    stem, dot, ext = name.rpartition(".")
    if not dot or not SAFE_ID.match(stem) or not ext.isalnum():
        raise DownloadError(f"refusing file name {name!r}: expected '<video_id>.<ext>' with no path parts")


def _remote_size(url: str, timeout: float) -> int | None:
    req = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        return int(length) if length is not None else None


def fetch_file(url: str, dest: Path, *, checksum: str | None = None, retries: int = 3, timeout: float = 60,
               backoff_s: float = 0.5, on_bytes: Callable[[int], None] | None = None) -> FileOutcome:
    """Download ``url`` to ``dest`` atomically, resuming ``.part`` files; raise nothing, report in the outcome."""
    outcome = FileOutcome(dest.name, "failed")
    part = dest.with_name(f".{dest.name}.part")
    if dest.exists():
        try:
            size = _remote_size(url, timeout)
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            size = None
        if (size is None or dest.stat().st_size == size) and (checksum is None or _digest(dest, len(checksum)) == checksum):
            outcome.status, outcome.bytes = "exists", dest.stat().st_size
            return outcome
        dest.rename(part) if not part.exists() else dest.unlink()
    total: int | None = None
    for attempt in range(1, retries + 2):
        outcome.attempts = attempt
        have = part.stat().st_size if part.exists() else 0
        if attempt == 1:
            outcome.resumed_from = have
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            req = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if have and resp.status == 206:
                    content_range = resp.headers.get("Content-Range", "")
                    total = int(content_range.rsplit("/", 1)[1]) if "/" in content_range else None
                    mode = "ab"
                else:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length is not None else None
                    mode, have = "wb", 0
                with open(part, mode) as fh:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        fh.write(block)
                        if on_bytes:
                            on_bytes(len(block))
            size = part.stat().st_size
            if total is not None and size != total:
                raise DownloadError(f"connection closed at {size} of {total} bytes")
            if checksum is not None:
                digest = _digest(part, len(checksum))
                if digest != checksum:
                    part.unlink()
                    raise DownloadError(f"checksum mismatch: expected {checksum}, found {digest} (the partial file was removed)")
            os.replace(part, dest)
            outcome.status, outcome.bytes, outcome.error = "downloaded", size, ""
            return outcome
        except urllib.error.HTTPError as exc:
            outcome.error = f"HTTP {exc.code} {exc.reason} for {url}"
            if exc.code == 416 and part.exists():  # our partial file is longer than the remote one: start again
                part.unlink()
            elif 400 <= exc.code < 500 and exc.code not in (408, 429):
                return outcome
        except (urllib.error.URLError, OSError, http.client.HTTPException, socket.timeout, DownloadError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
        time.sleep(backoff_s * attempt)
    return outcome


def download(names: Iterable[str], out_dir: str | os.PathLike, *, base_url: str, subset: str = "trainval",
             checksums: dict[str, str] | None = None, workers: int = 4, retries: int = 3, timeout: float = 60,
             progress: bool = True, log: Callable[[str], None] = print) -> DownloadResult:
    """Download movie files ``names`` from ``{base_url}/{subset}/{name}`` into ``out_dir``.

    >>> download(["-5KQ66BBWC4.mkv"], "movies", base_url="https://s3.amazonaws.com/ava-dataset")   # doctest: +SKIP
    """
    names = list(names)
    for name in names:
        _check_name(name)
    from .io import folder_lock

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(out_dir, "movies", out_dir / ".refava-download.lock"):     # two downloads share .part files
        return _download(names, out_dir, base_url, subset, checksums, workers, retries, timeout, progress, log)


def _download(names, out_dir: Path, base_url, subset, checksums, workers, retries, timeout, progress, log):
    started = time.perf_counter()
    result = DownloadResult(out_dir=out_dir)
    prefix = base_url.rstrip("/") + (f"/{subset}" if subset else "")
    bar = None
    if progress and sys.stderr.isatty():          # a log file gets no bar
        from tqdm import tqdm

        bar = tqdm(total=None, unit="B", unit_scale=True, desc=f"download {len(names)} files", dynamic_ncols=True)
    on_bytes = bar.update if bar is not None else None
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(fetch_file, f"{prefix}/{name}", out_dir / name,
                                   checksum=(checksums or {}).get(name), retries=retries, timeout=timeout,
                                   on_bytes=on_bytes) for name in names]
            for future in as_completed(futures):
                result.outcomes.append(future.result())
    finally:
        if bar is not None:
            bar.close()
    result.outcomes.sort(key=lambda o: o.name)
    result.seconds = time.perf_counter() - started
    for line in result.summary_lines():
        log(line)
    return result
