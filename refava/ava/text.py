"""Reading the AVA text files: UTF-8 with or without a byte-order mark; anything else is refused naming the file,
the line and the byte (refava.io's message)."""
from __future__ import annotations

from pathlib import Path

from ..errors import AnnotationFormatError


def read_text(path: str | Path, what: str = "AVA file") -> str:
    """The text of ``path``: UTF-8, a leading BOM dropped (spreadsheet programs write one).

    >>> read_text("ava_train_v2.2.csv")[:11]   # doctest: +SKIP
    '-5KQ66BBWC4'
    """
    from ..io import InputError, decode_text

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationFormatError(f"{path}: {what} not found") from None
    try:
        return decode_text(data, str(path), what)
    except InputError as exc:
        raise AnnotationFormatError(str(exc)) from None
