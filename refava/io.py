"""The one way refava reads what a user hands it: csv, JSON, JSON lines (Label Studio exports, predictions,
completion records).

Every reader turns encoding, parse, type, depth and size problems into one :class:`InputError` line that names the
file and line, says what was expected and what was found, and what to do; memory is bounded by the line (or file)
size limit, not by the file, and an error message quotes at most :data:`QUOTE` characters of what it found.

>>> for number, obj in iter_json_lines("predictions.jsonl", what="predictions"):   # doctest: +SKIP
...     use(obj)
"""
from __future__ import annotations

import csv
import glob
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ValidationError

MAX_LINE_BYTES = 16 << 20        # one line of a csv or JSON-lines file
MAX_JSON_BYTES = 1 << 30         # one whole JSON document (a Label Studio export)
MAX_DEPTH = 64                   # JSON nesting
MAX_INT_DIGITS = 30              # a JSON integer longer than this is not a count, an id or a score
QUOTE = 80                       # characters of a bad value quoted in a message


class InputError(ValidationError):
    """An input file is not in the form a command expects (encoding, syntax, type, depth or size)."""


def quote(value: Any) -> str:
    """``repr(value)`` cut to :data:`QUOTE` characters (a 200 MB line never becomes a 200 MB message)."""
    text = repr(value) if not isinstance(value, (bytes, bytearray)) else repr(bytes(value[:QUOTE]))
    return text if len(text) <= QUOTE else text[:QUOTE] + f"... ({len(text):,} characters)"


def _encoding_problem(data: bytes, where: str) -> InputError:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        found = "UTF-16 (it starts with a UTF-16 byte-order mark)"
    elif b"\x00" in data[:4096]:
        found = "binary data (NUL bytes)"
    else:
        found = "bytes that are not UTF-8 (Latin-1 or another legacy encoding?)"
    return InputError(f"{where}: expected UTF-8 text, found {found}; save or export the file as UTF-8 and rerun")


def decode_text(data: bytes, where: str, what: str = "file") -> str:
    """``data`` as UTF-8 (a byte-order mark dropped), or an :class:`InputError` naming the line, byte and column of
    the first bad byte (the message :func:`iter_lines` gives for the same byte)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _encoding_problem(data, where)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(data[exc.start], exc.start, 1 + data.count(b"\n", 0, exc.start),
                        exc.start - (data.rfind(b"\n", 0, exc.start) + 1), b"\x00" in data[:4096], where,
                        what) from None


def _not_utf8(byte: int, offset: int, line: int, column: int, binary: bool, where: str, what: str) -> InputError:
    """The one message for a ``byte`` that is not UTF-8, at ``offset`` in the file (``column`` 0-based)."""
    kind = "binary data" if binary else "Latin-1 or another legacy encoding?"
    return InputError(f"{where} line {line}: byte {offset} (column {column + 1}, 0x{byte:02x}) is not UTF-8 "
                      f"({kind}); expected UTF-8 text: re-save the {what} as UTF-8")


def _json_number(text: str, where: str):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise InputError(f"{where}: a number of {len(text):,} digits ({text[:20]}...): expected a count, an id or a "
                         f"score of at most {MAX_INT_DIGITS} digits")
    return int(text)


def _json_float(text: str, where: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"{where}: the number {text[:QUOTE]} is out of range (it overflows to infinity)")
    return value


def _refuse_constant(text: str, where: str):
    raise InputError(f"{where}: {text} is not a JSON number (JSON has no NaN or Infinity); write finite numbers")


def _check_depth(text: str, where: str, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` before the parser recurses into it (linear scan, strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                line = text.count("\n", 0, i) + 1
                raise InputError(f"{where}:{line}: JSON nested more than {limit} levels deep: not the shape this "
                                 f"file should have")
        elif ch in "]}":
            depth -= 1


def parse_json(text: str, where: str) -> Any:
    """One JSON document, with depth, number and constant checks; errors name ``where`` and the line."""
    if len(text) > 256 and ("[" * 32 in text or "{" * 32 in text or text.count("[") + text.count("{") > MAX_DEPTH):
        _check_depth(text, where)
    try:
        return json.loads(text, parse_int=lambda s: _json_number(s, where),
                          parse_float=lambda s: _json_float(s, where),
                          parse_constant=lambda s: _refuse_constant(s, where))
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}:{exc.lineno}: not valid JSON at column {exc.colno} ({exc.msg})") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply to read") from None


def read_json(path: str | os.PathLike, *, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A whole JSON file (at most ``max_bytes``), checked as :func:`parse_json` does."""
    path = Path(path)
    where = str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"{where}: {size:,} bytes, more than the {max_bytes:,} a {what} may have")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{where}: no such {what} file") from None
    except IsADirectoryError:
        raise InputError(f"{where}: a folder, expected a {what} file") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read the {what} ({exc.strerror or exc})") from None
    return parse_json(decode_text(data, where, what), where)


def iter_lines(path: str | os.PathLike, *, what: str, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 text file, reading at most ``max_line_bytes`` per line."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, expected a {what} file") from None
    with fh:
        head = fh.read(4)
        fh.seek(0)
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise _encoding_problem(head, str(path))
        number, offset = 0, 0
        while True:
            raw = fh.readline(max_line_bytes + 1)
            if not raw:
                return
            number += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                raise InputError(f"{path}:{number}: a line longer than {max_line_bytes:,} bytes: expected one "
                                 f"{what} record per line")
            start = offset
            offset += len(raw)
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw, start = raw[3:], 3
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(raw[exc.start], start + exc.start, number, exc.start, b"\x00" in raw, str(path),
                                what) from None


def iter_json_lines(path: str | os.PathLike, *, what: str,
                    max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSON-lines file, each checked as :func:`parse_json`."""
    for number, line in iter_lines(path, what=what, max_line_bytes=max_line_bytes):
        if line.strip():
            yield number, parse_json(line, f"{path}:{number}")


def iter_csv(path: str | os.PathLike, *, what: str, max_line_bytes: int = MAX_LINE_BYTES,
             delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each row of a UTF-8 csv file; quoting, encoding and size errors name the line."""
    lines = iter_lines(path, what=what, max_line_bytes=max_line_bytes)
    position = {"line": 0}

    def text():
        for number, line in lines:
            position["line"] = number
            yield line

    csv.field_size_limit(max_line_bytes)
    reader = csv.reader(text(), delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{path}:{position['line']}: not a csv row this {what} can have ({exc})") from None
        yield position["line"], row


def expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    """``value`` when it is of ``kind`` (a bool is not a number), else an :class:`InputError` naming both."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join({int: "an integer", float: "a number", str: "a string", list: "a list",
                             dict: "an object", bool: "true/false", type(None): "null"}.get(k, k.__name__)
                            for k in kinds)
        raise InputError(f"{where}: {what}: expected {names}, found {type(value).__name__} {quote(value)}")
    return value


__all__ = ["InputError", "OutputFolderError", "check_output_folder", "decode_text", "expect", "iter_csv",
           "folder_lock", "iter_json_lines", "iter_lines", "output_folder", "parse_json", "recover_output_folder",
           "quote", "read_json"]


# --- the one writer of output folders -----------------------------------------------------------------------------

OUTPUT_MARK = ".refava-output.json"     # what refava wrote in an output folder (export, browse)


class OutputFolderError(ValidationError):
    """An output folder cannot be written: it is not refava's, it holds an input, or another run writes it."""


def _marked_files(folder: Path) -> set[str] | None:
    """The files refava wrote in ``folder`` (its :data:`OUTPUT_MARK`), or None when refava did not write it."""
    try:
        files = json.loads((folder / OUTPUT_MARK).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {f for f in files if isinstance(f, str)} | {OUTPUT_MARK}


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_folder(out: Path, *, protected=(), owned=_marked_files, what: str = "output") -> None:
    """Refuse (untouched) an ``out`` that is a file, that is or holds one of the ``protected`` paths (a workspace, its
    tables or frames, an input), or that is a non-empty folder refava did not write (``owned`` gives None)."""
    for path in protected:
        path = Path(path).resolve()
        if _within(path, out):
            raise OutputFolderError(f"refusing to write the {what} to {out}: it {'is' if path == out else 'holds'} "
                                    f"{path}, which refava reads or keeps; nothing was changed. Pass --out with a new "
                                    f"or empty folder of its own")
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"{out} is a file: pass --out with a folder for the {what} (nothing was changed)")
    if out.is_dir() and any(out.iterdir()) and owned(out) is None:
        raise OutputFolderError(f"refusing to write the {what} into {out}: it is not empty and refava did not write "
                                f"it; nothing was changed. Pass --out with a new or empty folder")


def _siblings(out: Path):
    """(kind, path) of the temporary and set-aside folders that runs on this host left beside ``out``."""
    from .fsutil import HOST, OWNER_RE, pid_alive

    prefix = f".{out.name}."
    for path in sorted(out.parent.glob(f".{glob.escape(out.name)}.*")):
        rest = path.name[len(prefix):]
        kind = rest.rsplit(".", 1)[-1]
        match = OWNER_RE.search("." + rest)
        if kind not in ("tmp", "old") or match is None:
            continue
        if match["host"] != HOST or pid_alive(int(match["pid"])):
            continue                      # a live run's, or another machine's on a shared filesystem
        yield kind, path


def recover_output_folder(out: Path, owned=_marked_files) -> list[str]:
    """Undo what a killed writer of ``out`` on this host left: a half-built ``.<out>.HOST~PID.tmp`` is deleted; a
    set-aside ``.<out>.HOST~PID.old`` is put back when ``out`` is missing, else its files that refava did not write
    move into ``out`` and it is deleted.  Returns what was done."""
    import shutil

    done = []
    for kind, path in _siblings(out):
        if kind == "tmp":
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path.name}, the half-built folder of a killed run")
        elif not out.exists():
            path.rename(out)
            done.append(f"restored {out} from {path.name} (a run was killed while swapping it)")
        else:
            _move_foreign(path, out, owned)
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path.name}, the previous {out.name} of a killed run")
    return done


def _move_foreign(old: Path, out: Path, owned) -> None:
    """Move the files of ``old`` that refava did not write into ``out`` (where nothing is in their way)."""
    own = owned(old) or set()
    for path in sorted(old.rglob("*")):
        if not (path.is_file() or path.is_symlink()) or path.relative_to(old).as_posix() in own:
            continue
        target = out / path.relative_to(old)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)


def take_lock(fd: int, refusal: Callable[[str], str]) -> None:
    """Take an exclusive ``flock`` on ``fd`` at once, or close it and raise :class:`~refava.errors.LockedError` with
    ``refusal(holder)`` (the holder as the lock file names it)."""
    import fcntl

    from .errors import LockedError

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise LockedError(refusal(holder)) from None


class folder_lock:
    """An exclusive ``flock`` on ``.<out>.lock`` beside ``out`` (or on ``path``), removed when released; a second
    writer of the same folder is refused at once, naming the first."""

    def __init__(self, out: Path, what: str, path: Path | None = None):
        self.path = path or out.parent / f".{out.name}.lock"
        self.what = what
        self.fd = None

    def __enter__(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            take_lock(fd, lambda holder: f"{self.path} is held: the {self.what} there is being written by {holder}; "
                                         f"wait for it to end (nothing was changed)")
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:                                # not a lock file that its last holder removed meanwhile
                break
            os.close(fd)
        from .fsutil import owner

        try:                                        # who holds it, for the refusal (a full disk: said by nobody)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{owner()}\n".encode(), 0)
        except OSError:
            pass
        self.fd = fd
        return self

    def __exit__(self, *exc):
        import fcntl

        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


class output_folder:
    """Build a folder beside ``out`` and swap it in: the one way refava writes an output folder.

    * refused untouched: ``out`` that is a file, that is or holds a ``protected`` path, or a non-empty folder refava
      did not write (``owned(folder)`` gives the relative paths refava wrote there, None for none);
    * one writer at a time (an OS lock beside ``out``; a second is refused at once, naming the first);
    * the work goes to ``.<out>.HOST~PID.tmp``; on success the old ``out`` is set aside, the new one renamed in,
      the old one's files that refava did not write moved into it, and the old one deleted; on error nothing has
      changed;
    * a killed run's leftovers are put right by the next writer on the same host (never another host's).

    The folder records what refava wrote in :data:`OUTPUT_MARK` (unless ``mark`` is false: a folder whose own
    manifest lists its files, read by ``owned``).

    >>> with output_folder(Path("exports/ava"), protected=[ws.root / "tables"]) as tmp:   # doctest: +SKIP
    ...     (tmp / "x.csv").write_text("...")
    """

    def __init__(self, out: str | os.PathLike, *, protected=(), owned=None, what: str = "output", mark: bool = True):
        self.out = Path(out).resolve()
        self.protected = protected
        self.owned = owned or _marked_files
        self.mark = mark
        self.what = what
        self.recovered: list[str] = []

    def __enter__(self) -> Path:
        import shutil

        from .fsutil import owner

        check_output_folder(self.out, protected=self.protected, owned=lambda p: set(), what=self.what)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.lock = folder_lock(self.out, self.what).__enter__()
        try:
            self.recovered = recover_output_folder(self.out, self.owned)
            check_output_folder(self.out, owned=self.owned, what=self.what)
            self.tmp = self.out.parent / f".{self.out.name}.{owner()}.tmp"
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir()
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self.tmp

    def __exit__(self, kind, exc, tb) -> None:
        import shutil

        from .fsutil import owner

        try:
            if kind is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                return
            if self.mark:
                files = sorted(p.relative_to(self.tmp).as_posix() for p in self.tmp.rglob("*") if p.is_file())
                (self.tmp / OUTPUT_MARK).write_text(json.dumps({"files": files}, indent=0) + "\n", encoding="utf-8")
            old = None
            if self.out.exists():
                old = self.out.parent / f".{self.out.name}.{owner()}.old"
                shutil.rmtree(old, ignore_errors=True)
                self.out.rename(old)
            try:
                self.tmp.rename(self.out)
            except BaseException:
                if old is not None:
                    old.rename(self.out)
                raise
            if old is not None:
                _move_foreign(old, self.out, self.owned)
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        finally:
            self.lock.__exit__(None, None, None)
