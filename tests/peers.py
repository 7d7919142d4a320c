"""Peer libraries the tests compare refava with, imported the way they must be on this stack."""
from __future__ import annotations

import sys


def imagecorruptions():
    """``imagecorruptions.corruptions`` (installed by ``make install`` without its dependencies: its opencv-python
    would replace the headless OpenCV refava pins).  It imports ``pkg_resources.resource_filename`` (for its frost
    images), which setuptools >= 81 no longer ships: stand in with importlib.resources when it is missing; and its
    fog uses ``np.float_``, gone in NumPy 2."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import importlib.resources
        import types

        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)
        sys.modules["pkg_resources"] = shim
    import numpy as np

    if not hasattr(np, "float_"):
        np.float_ = np.float64
    try:
        import imagecorruptions.corruptions as corruptions
    except ImportError as exc:                 # a failure, not a skip: make install puts it there
        raise AssertionError(f"imagecorruptions is not importable ({exc}): run `make install` (it installs "
                             f"imagecorruptions==1.1.2 --no-deps and scikit-image)") from None
    return corruptions
