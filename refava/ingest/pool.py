"""The thread-pool JPEG encoder of one movie (the helper process, :mod:`refava.ingest.jpeg_worker`, falls back on
it when its ring is full)."""
from __future__ import annotations

from fractions import Fraction

from .settings import ClipSettings


class _Encoder:
    """Converts chosen frames into JPEG bytes on a small thread pool, overlapping with decoding.

    OpenCV and PyAV release the GIL while they convert and encode, so this runs beside the decoder.  One frame
    that serves several targets (overlapping windows) is encoded once per role.  At most ``max_pending`` jobs
    wait at a time, which bounds memory.
    """

    def __init__(self, settings: ClipSettings, workers: int = 2, max_pending: int = 64):
        from concurrent.futures import ThreadPoolExecutor

        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refava-jpeg")
        self._cache_time: Fraction | None = None
        self._cache: dict[str, object] = {}
        self._pending: list = []
        self._max_pending = max_pending

    def _job(self, frame, lock, role: str) -> tuple[bytes, int, int]:
        from ..video import encode_frame_jpeg

        side = self.settings.keyframe_short_side if role == "keyframe" else self.settings.short_side
        return encode_frame_jpeg(frame, side or None, self.settings.jpeg_quality, lock=lock)

    def submit(self, decoded, role: str):
        """A future of (jpeg bytes, width, height) for ``decoded`` in ``role``."""
        import threading

        if decoded.time != self._cache_time:
            self._cache_time, self._cache = decoded.time, {"lock": threading.Lock()}
        future = self._cache.get(role)
        if future is None:
            if len(self._pending) >= self._max_pending:
                self._pending.pop(0).result()
            future = self._pool.submit(self._job, decoded.frame, self._cache["lock"], role)
            self._pending.append(future)
            self._cache[role] = future
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
