"""JPEG encoding for ingest in a helper process that runs only on otherwise idle CPU time.

Decoding is ingest's critical path; JPEG encoding can wait.  Threads of the ingest process cannot be given a lower
priority safely: a starved low-priority thread holding the GIL stalls the decoder (measured: ingest 4x slower on
a busy machine).  A separate process has its own GIL, so :class:`ProcessEncoder` runs the encoder in one, under
Linux's ``SCHED_IDLE`` policy, and never waits for it:

- A decoded 4:2:0 frame's planes are copied into a free slot of a shared-memory ring (an anonymous ``memfd``)
  and the job goes to the helper through a pipe; results come back through another pipe.
- When no slot is free (the helper is starved, behind or still starting), the frame goes to a one-thread pool at
  normal priority instead, as it would without the helper.  Frames in other pixel formats go there too.
- When a result is needed and the helper has not delivered it, the ingest process takes the job back and
  encodes it from the slot itself (the helper skips jobs taken back; at most the ones it is working on are
  encoded twice, and both encodings give the same bytes).  Results are asked for newest first, while the helper
  works oldest first.
- If the helper dies, every job still in the ring is taken back.

So a busy machine costs little more than the thread pool alone (measured: ingest about 25 % slower with two
other busy processes, where low-priority threads were 4x slower), and idle time does the encoding for free.
The helper runs two encoding threads: a gap on either CPU then finds one ready.  Linux only (``memfd_create``,
``SCHED_IDLE``); elsewhere ingest keeps its thread pool.

Run as ``python -m refava.ingest.jpeg_worker JOBS_FD RESULTS_FD MEMFD SIZE THREADS`` by :class:`ProcessEncoder`, never by hand.
"""
from __future__ import annotations

import mmap
import os
import sys
import time
from pathlib import Path

import numpy as np

FLAGS_BYTES = 4096     # one "taken back" byte per slot, at the start of the shared memory
SLOT_ALIGN = 4096
STARVED_S = 0.01      # no answer from the helper for this long while the ring is full: it is starved


def _planes(buffer, offset: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a (width x height) 4:2:0 frame stored at ``offset``."""
    cw, ch = (width + 1) // 2, (height + 1) // 2
    y = np.frombuffer(buffer, np.uint8, width * height, offset).reshape(height, width)
    u = np.frombuffer(buffer, np.uint8, cw * ch, offset + width * height).reshape(ch, cw)
    v = np.frombuffer(buffer, np.uint8, cw * ch, offset + width * height + cw * ch).reshape(ch, cw)
    return y, u, v


def frame_bytes(width: int, height: int) -> int:
    cw, ch = (width + 1) // 2, (height + 1) // 2
    return width * height + 2 * cw * ch


def _lower_priority() -> None:
    """SCHED_IDLE for the calling thread (threads started after this inherit it); niceness 19 where refused."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def main(argv: list[str]) -> int:
    """The helper: encoding threads read jobs, encode the ones not taken back and answer every job (so its slot
    can be reused).  More than one thread, so that a gap on any CPU finds an encoder ready to run in it."""
    import threading
    from multiprocessing.connection import Connection

    from ..video import encode_planes_jpeg

    _lower_priority()
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    jobs_fd, results_fd, memfd, size, n_threads = (int(a) for a in argv)
    jobs, results = Connection(jobs_fd, writable=False), Connection(results_fd, readable=False)
    buffer = mmap.mmap(memfd, size)
    flags = np.frombuffer(buffer, np.uint8, FLAGS_BYTES, 0)
    receiving, answering = threading.Lock(), threading.Lock()

    def serve() -> None:
        try:
            while True:
                with receiving:
                    job = jobs.recv()
                if job is None:
                    return
                slot, offset, width, height, full_range, short_side, quality = job
                encoded = None
                if not flags[slot]:
                    encoded = encode_planes_jpeg(*_planes(buffer, offset, width, height), full_range, short_side,
                                                 quality)
                with answering:
                    results.send((slot, encoded))
        except (EOFError, OSError):
            return    # the ingest process is done or gone

    threads = [threading.Thread(target=serve, daemon=True, name=f"refava-jpeg-{i}") for i in range(n_threads)]
    for thread in threads:
        thread.start()
    threads[0].join()     # the first to see the end (or a closed pipe) ends the helper
    os._exit(0)


class _Done:
    """A result made at once."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class _Job:
    """A future-like handle on one JPEG: ``result()`` -> (jpeg bytes, width, height), never waiting for the helper."""

    __slots__ = ("owner", "slot", "value", "args")

    def __init__(self, owner: "ProcessEncoder", slot: int, args: tuple):
        self.owner, self.slot, self.args, self.value = owner, slot, args, None

    def result(self):
        if self.value is None:
            self.owner._resolve(self)
        return self.value


def _enlarge_pipe(fd: int, size: int = 1 << 20) -> None:
    """Let the results pipe hold several JPEGs (64 KiB by default: the helper would wait on the ingest process
    for nearly every keyframe).  Best effort: Linux's limit is /proc/sys/fs/pipe-max-size."""
    try:
        import fcntl

        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), min(size, limit))
    except (OSError, ValueError):
        pass


def available() -> bool:
    """Whether this platform has what :class:`ProcessEncoder` needs (Linux: memfd_create and SCHED_IDLE)."""
    return sys.platform.startswith("linux") and hasattr(os, "memfd_create") and hasattr(os, "SCHED_IDLE")


class ProcessEncoder:
    """The ingest :class:`~refava.ingest.pool._Encoder` interface (``submit``, ``close``) backed by an idle-priority
    helper process; see the module docstring.

    ``memory_bytes`` bounds the shared ring (at least 4 slots of one frame each).  Jobs that find the ring full
    go to ``overflow``, a one-thread pool at normal priority (on a busy machine the helper gets no CPU time, and
    the pool keeps the encoding beside the decoder instead of in its way).  ``counts`` says who encoded what.
    """

    def __init__(self, settings, width: int, height: int, *, memory_bytes: int = 64 << 20, max_slots: int = 64,
                 helper_threads: int | None = None):
        import subprocess
        from multiprocessing.connection import Pipe

        from .pool import _Encoder
        from ..procs import preexec_die_with_parent

        self.settings = settings
        self._frame_size = (width, height)
        self._slot_bytes = -(-frame_bytes(width, height) // SLOT_ALIGN) * SLOT_ALIGN
        self.slots = max(4, min(max_slots, memory_bytes // self._slot_bytes, FLAGS_BYTES))
        size = FLAGS_BYTES + self.slots * self._slot_bytes
        self._memfd = os.memfd_create("refava-jpeg", os.MFD_CLOEXEC)
        os.ftruncate(self._memfd, size)
        self._buffer = mmap.mmap(self._memfd, size)
        self._flags = np.frombuffer(self._buffer, np.uint8, FLAGS_BYTES, 0)
        self._free = list(range(self.slots - 1, -1, -1))
        self._busy: dict[int, _Job] = {}           # slot -> the job in it, until the helper answers for it
        self._overflow = _Encoder(settings)
        self.counts = {"helper": 0, "inline": 0, "overflow": 0, "taken_back": 0}
        self._last_answer = time.monotonic()
        self._cache_time = None
        self._cache: dict[str, object] = {}
        helper_threads = helper_threads or min(2, os.cpu_count() or 1)
        jobs_read, self._jobs = Pipe(duplex=False)
        self._results, results_write = Pipe(duplex=False)
        _enlarge_pipe(results_write.fileno())
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        fds = (jobs_read.fileno(), results_write.fileno(), self._memfd)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "refava.ingest.jpeg_worker", *map(str, fds), str(size), str(helper_threads)],
                pass_fds=fds, env=env, stdin=subprocess.DEVNULL, preexec_fn=preexec_die_with_parent())
        except OSError:
            self._process = None
        finally:
            jobs_read.close()
            results_write.close()
        self._alive = self._process is not None

    # -- the ingest interface -------------------------------------------------------------------------------
    def submit(self, decoded, role: str):
        """A future of (jpeg bytes, width, height) for ``decoded`` in ``role`` (one job per frame and role)."""
        if decoded.time != self._cache_time:
            self._cache_time, self._cache = decoded.time, {}
        job = self._cache.get(role)
        if job is None:
            job = self._cache[role] = self._submit(decoded, role)
        return job

    def close(self) -> None:
        """Stop the helper and free the ring.  Results not asked for by now are dropped."""
        import subprocess

        self._overflow.close()
        if self._process is not None:
            try:
                self._jobs.send(None)
            except OSError:
                pass
            self._jobs.close()
            self._results.close()
            try:
                self._process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                self._process.kill()     # starved (idle priority on a busy machine): it holds nothing to lose
                self._process.wait()
            self._process = None
        self._alive = False
        del self._flags
        self._buffer.close()
        os.close(self._memfd)

    # -- inside ---------------------------------------------------------------------------------------------
    def _side(self, role: str) -> int | None:
        return (self.settings.keyframe_short_side if role == "keyframe" else self.settings.short_side) or None

    def _submit(self, decoded, role: str):
        from ..video import encode_planes_jpeg, planes_420

        planes = planes_420(decoded.frame)
        self._drain()
        if planes is None or (planes[0].shape[1], planes[0].shape[0]) != self._frame_size:
            self.counts["overflow"] += 1
            return self._overflow.submit(decoded, role)
        if not self._alive or not self._free:
            if not self._alive or time.monotonic() - self._last_answer > STARVED_S:
                self.counts["overflow"] += 1
                return self._overflow.submit(decoded, role)
            # the helper is keeping up, just not this moment: encoding here costs the decoder less than a
            # thread beside it would (measured), and frees no slot any sooner
            self.counts["inline"] += 1
            return _Done(encode_planes_jpeg(*planes, self._side(role), int(self.settings.jpeg_quality)))
        y, u, v, full_range = planes
        args = (full_range, self._side(role), int(self.settings.jpeg_quality))
        slot = self._free.pop()
        offset = FLAGS_BYTES + slot * self._slot_bytes
        for source, target in zip((y, u, v), _planes(self._buffer, offset, *self._frame_size)):
            target[...] = source
        self._flags[slot] = 0
        job = self._busy[slot] = _Job(self, slot, args)
        try:
            self._jobs.send((slot, offset, *self._frame_size, *args))
        except OSError:
            self._helper_gone()
        return job

    def _drain(self) -> None:
        """Take in whatever results the helper has sent, without waiting."""
        try:
            while self._alive and self._results.poll(0):
                slot, value = self._results.recv()
                job = self._busy.pop(slot)
                self._free.append(slot)
                self._last_answer = time.monotonic()
                if value is not None and job.value is None:
                    job.value = value
                    self.counts["helper"] += 1
        except (EOFError, OSError):
            self._helper_gone()

    def _helper_gone(self) -> None:
        """The helper died or its pipes broke: jobs still in the ring are encoded here when asked for."""
        self._alive = False
        self._busy.clear()

    def _resolve(self, job: _Job) -> None:
        """Give ``job`` its value now: the helper's if it has answered, else encoded here from the slot."""
        from ..video import encode_planes_jpeg

        self._drain()
        if job.value is not None:
            return
        self._flags[job.slot] = 1          # the helper skips it if it has not started it yet
        y, u, v = _planes(self._buffer, FLAGS_BYTES + job.slot * self._slot_bytes, *self._frame_size)
        job.value = encode_planes_jpeg(y, u, v, *job.args)
        self.counts["taken_back"] += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
