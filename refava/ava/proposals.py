"""AVA dense-proposal pickles, loaded without executing arbitrary code.

The files are ``dict['video_id,TTTT' -> float array (N, 5)]`` (x1, y1, x2, y2, score).  A restricted unpickler
allows only the globals NumPy arrays need; anything else (os.system, eval, ...) is refused.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import AnnotationFormatError

try:  # NumPy 2 moved the module; pickles written by NumPy 1 still name numpy.core
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core import multiarray as _multiarray

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers, numbers, strings and NumPy arrays."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            if module.startswith("numpy.core") or module.startswith("numpy._core"):
                return getattr(_multiarray, name)
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only NumPy arrays are allowed in such files")


def safe_load_pickle(path: str | os.PathLike):
    path = Path(path)
    if not path.exists():
        raise AnnotationFormatError(f"{path}: pickle file not found")
    try:
        return SafeUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
        raise AnnotationFormatError(f"{path}: not a loadable data pickle ({exc})") from exc


def load_proposals(path: str | os.PathLike) -> dict[tuple[str, int], np.ndarray]:
    """Read a dense-proposals pickle into {(video_id, second): float64 array (N, 5)}.

    >>> props = load_proposals("tests/data/ava/mmaction2_sample/ava_proposals_sample.pkl")   # doctest: +SKIP
    >>> props[("0f39OWEqJ24", 902)].shape[1]
    5
    """
    path = Path(path)
    data = safe_load_pickle(path)
    if not isinstance(data, dict):
        raise AnnotationFormatError(f"{path}: expected a dict 'video_id,TTTT' -> array (N, 5), found {type(data).__name__}")
    out = {}
    for key, value in data.items():
        if not isinstance(key, str) or key.count(",") != 1:
            raise AnnotationFormatError(f"{path}: expected keys 'video_id,TTTT', found {key!r}")
        video_id, ts = key.split(",")
        try:
            second = int(ts)
        except ValueError:
            raise AnnotationFormatError(f"{path}: key {key!r}: expected an integer second after ','") from None
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] not in (4, 5):
            raise AnnotationFormatError(f"{path}: key {key!r}: expected an array (N, 5), found shape {arr.shape}")
        out[(video_id, second)] = arr
    return out
