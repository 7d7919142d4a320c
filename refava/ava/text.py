"""Reading the AVA text files: UTF-8 with or without a byte-order mark; anything else is refused naming the file,
the line and the byte."""
from __future__ import annotations

import codecs
from pathlib import Path

from ..errors import AnnotationFormatError


def read_text(path: str | Path, what: str = "AVA file") -> str:
    """The text of ``path``: UTF-8, a leading BOM dropped (spreadsheet programs write one).

    >>> read_text("ava_train_v2.2.csv")[:11]   # doctest: +SKIP
    '-5KQ66BBWC4'
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationFormatError(f"{path}: {what} not found") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise AnnotationFormatError(
            f"{path} line {line}: byte {exc.start} (column {column}, 0x{data[exc.start]:02x}) is not UTF-8 ({exc.reason}); "
            f"expected UTF-8 text: re-save the {what} as UTF-8") from None
