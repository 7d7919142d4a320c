"""Progress bars: one place decides whether a long job shows one (only on a terminal: a log file gets no bar)."""
from __future__ import annotations

import sys


class NullBar:
    """What :func:`bar` returns when no bar is shown: the same calls, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def bar(*, total: int, enabled: bool, desc: str, unit: str):
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal, else a :class:`NullBar`."""
    if not enabled or not sys.stderr.isatty():
        return NullBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
