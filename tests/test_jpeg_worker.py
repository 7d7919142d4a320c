"""The idle-priority JPEG helper of ingest: same bytes as encoding in place, and nothing lost or stuck when the
helper is starved, dies, or meets frames it cannot take."""
from __future__ import annotations

import os
import signal
import time
from fractions import Fraction

import numpy as np
import pyarrow.parquet as pq
import pytest

from factories import make_indexed_video
from refava.ingest import jpeg_worker
from refava.ingest import ClipSettings, ingest_movie
from refava.video import DecodedFrame, encode_frame_jpeg

pytestmark = pytest.mark.skipif(not jpeg_worker.available(), reason="the JPEG helper process needs Linux")

W, H = 320, 180
SETTINGS = ClipSettings(frames=8, short_side=96, keyframe_short_side=0, jpeg_quality=90)


def frames(n: int, fmt: str = "yuv420p") -> list[DecodedFrame]:
    import av

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image = rng.integers(0, 256, (H // 10, W // 10, 3), dtype=np.uint8).repeat(10, 0).repeat(10, 1)
        out.append(DecodedFrame(Fraction(i, 30), av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=fmt)))
    return out


def expected(decoded: DecodedFrame, role: str):
    side = SETTINGS.keyframe_short_side if role == "keyframe" else SETTINGS.short_side
    return encode_frame_jpeg(decoded.frame, side or None, SETTINGS.jpeg_quality)


def submit_all(encoder, decoded: list[DecodedFrame]):
    """[(expected result, job)] for every frame in both roles.  The expected results are made first: PyAV's
    conversion of one frame must not run in two threads at once."""
    wanted = [expected(d, role) for d in decoded for role in ("keyframe", "sampled")]
    return list(zip(wanted, [encoder.submit(d, role) for d in decoded for role in ("keyframe", "sampled")]))


def test_the_helper_encodes_what_encoding_in_place_would(tmp_path):
    encoder = jpeg_worker.ProcessEncoder(SETTINGS, W, H)
    try:
        jobs = submit_all(encoder, frames(6))
        deadline = time.monotonic() + 30
        while encoder.counts["helper"] < len(jobs) and time.monotonic() < deadline:
            encoder._drain()
            time.sleep(0.01)
        assert encoder.counts["helper"] == len(jobs) == 12     # all made by the helper on this idle machine
        for want, job in jobs:
            assert job.result() == want
        assert encoder.counts["taken_back"] == 0
    finally:
        encoder.close()


def test_a_starved_helper_loses_nothing_and_holds_nothing_up():
    encoder = jpeg_worker.ProcessEncoder(SETTINGS, W, H, memory_bytes=1)     # the smallest ring: 4 slots
    assert encoder.slots == 4
    os.kill(encoder._process.pid, signal.SIGSTOP)        # as if other work took every CPU
    try:
        started = time.monotonic()
        jobs = submit_all(encoder, frames(10))
        time.sleep(2 * jpeg_worker.STARVED_S)
        jobs += submit_all(encoder, frames(12)[10:])
        for want, job in jobs:
            assert job.result() == want
        assert time.monotonic() - started < 20
        assert encoder.counts["taken_back"] == 4                 # the jobs stuck in the ring
        assert encoder.counts["overflow"] + encoder.counts["inline"] == len(jobs) - 4
        assert encoder.counts["overflow"] >= 4                   # after STARVED_S without an answer
        assert encoder.counts["helper"] == 0
    finally:
        process = encoder._process
        encoder.close()                                           # a stopped helper is killed, not waited for
        os.kill(process.pid, signal.SIGCONT) if process.poll() is None else None
    assert process.poll() is not None


def test_a_dead_helper_loses_nothing():
    encoder = jpeg_worker.ProcessEncoder(SETTINGS, W, H)
    try:
        first = submit_all(encoder, frames(3))
        encoder._process.kill()
        encoder._process.wait()
        rest = submit_all(encoder, frames(8)[3:])
        for want, job in first + rest:
            assert job.result() == want
        assert not encoder._alive
    finally:
        encoder.close()


def test_frames_the_helper_cannot_take_go_to_the_thread_pool():
    encoder = jpeg_worker.ProcessEncoder(SETTINGS, W, H)
    try:
        other_format = frames(2, "yuv444p")
        jobs = submit_all(encoder, other_format)
        for want, job in jobs:
            assert job.result() == want
        assert encoder.counts["overflow"] == len(jobs)
    finally:
        encoder.close()


@pytest.mark.parametrize("name, fps", [("h264.mp4", Fraction(30)), ("vp9.webm", Fraction(25))])
def test_ingest_stores_the_same_bytes_with_and_without_the_helper(tmp_path, name, fps):
    path = tmp_path / "movies" / name
    make_indexed_video(path, int(9 * fps), fps=fps)
    stamps = [(2, 1), (3, 2), (4, 1), (6, 1)]
    a = ingest_movie("m", path, stamps, ClipSettings(frames=8), tmp_path / "a", jpeg_process=True)
    b = ingest_movie("m", path, stamps, ClipSettings(frames=8), tmp_path / "b", jpeg_process=False)
    assert a.clips == b.clips and not a.problems and len(a.clips) == 4
    table = "frames/clean/m.parquet"
    assert pq.read_table(tmp_path / "a" / table).to_pylist() == pq.read_table(tmp_path / "b" / table).to_pylist()
    assert (tmp_path / "a" / table).read_bytes() == (tmp_path / "b" / table).read_bytes()
