"""Where one movie's frames go: JPEG encoding (threads or the helper process) and the Parquet writer."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from .pool import _Encoder
from .settings import ClipSettings


class _BackgroundWriter:
    """A ParquetWriter whose row groups are written on a thread of their own (in order, one at a time), so
    decoding goes on while the bytes go to disk.  An error in a write is raised by the next call."""

    def __init__(self, writer: pq.ParquetWriter):
        from concurrent.futures import ThreadPoolExecutor

        self._writer = writer
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refava-parquet")
        self._pending = None

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def write_table(self, table: pa.Table) -> None:
        self._wait()     # at most one row group in flight: bounded memory
        self._pending = self._pool.submit(self._writer.write_table, table)

    def add_key_value_metadata(self, metadata: dict) -> None:
        self._wait()
        self._writer.add_key_value_metadata(metadata)

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


def _cv2_threads(n: int) -> int:
    """Set OpenCV's thread count; returns the previous one."""
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(n)
    return previous


def _make_encoder(settings: ClipSettings, info, jpeg_process: bool | None, threads: int):
    """The JPEG encoder for one movie: the idle-priority helper process (:mod:`refava.jpeg_worker`) when this
    movie's decoder has the machine to itself (``threads`` 0) and the platform allows it, else a thread pool.
    With several movies at once the decoders keep every core busy and the helper would only add copying
    (measured: 2 movies on 2 cores about 3 % slower with it).  ``jpeg_process`` True or False forces the choice."""
    from . import jpeg_worker

    if jpeg_process is None:
        jpeg_process = threads == 0 and jpeg_worker.available()
    if jpeg_process and info.width > 0 and info.height > 0:
        return jpeg_worker.ProcessEncoder(settings, info.width, info.height)
    return _Encoder(settings)
