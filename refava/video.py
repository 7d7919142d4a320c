"""Video I/O in one place: ``probe`` (what a file is), ``iter_frames`` (a generator of decoded frames),
``VideoWriter`` (a sink), ``encode_jpeg`` / ``decode_jpeg``.

Times are *movie times*: seconds from the stream's start (``pts * time_base - start_s``), kept as exact
``Fraction`` where frame choice depends on them.  Decoder errors are wrapped in :class:`VideoDecodeError` and
never swallowed.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import MissingMediaError, VideoDecodeError
from .records import Movie

CODEC_FOR_SUFFIX = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}


# what probe reads is a row of the movies table: one record (its video id is the file's stem)
VideoInfo = Movie


def _av():
    import av

    return av


def _open(path: Path):
    av = _av()
    if not path.exists():
        raise MissingMediaError(f"{path}: video file not found; download it (`refava download`) or fix the path")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(f"{path}: cannot open as a video ({exc}); the file may be corrupt or not a video: "
                               f"download it again") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: expected a video stream, found none (streams: {list(container.streams)})")
    return container


def _stream_start(stream) -> Fraction:
    if stream.start_time is not None and stream.time_base is not None:
        return Fraction(stream.start_time) * Fraction(stream.time_base)
    return Fraction(0)


def probe(path: str | os.PathLike, *, count_packets: bool = True) -> Movie:
    """Read container, codec, size, frame rate, duration and frame count of a video file, as a row of the movies
    table (:class:`refava.records.Movie`, its ``video_id`` the file's stem).

    The frame count comes from the header when it has one (mp4), else from counting packets (no decoding).

    >>> info = probe("movie.mkv")   # doctest: +SKIP
    >>> info.codec, info.fps
    ('h264', 30.0)
    """
    path = Path(path)
    av = _av()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        frame_count, source = int(stream.frames or 0), "header"
        if frame_count == 0 and count_packets:
            source = "packets"
            try:
                frame_count = sum(1 for p in container.demux(stream) if p.size > 0)
            except av.error.FFmpegError as exc:
                raise VideoDecodeError(f"{path}: demuxing failed after the header ({exc}); the file is damaged: "
                                       f"download it again") from exc
        if fps == 0.0 and duration > 0 and frame_count:
            fps = frame_count / duration
        return Movie(
            video_id=path.stem, filename=path.name, container=container.format.name, codec=ctx.name,
            width=ctx.width, height=ctx.height,
            fps=fps, duration_s=duration, frame_count=frame_count, frame_count_source=source,
            start_s=float(_stream_start(stream)), size_bytes=path.stat().st_size,
        )
    finally:
        container.close()


@dataclass
class DecodedFrame:
    """A decoded frame and its exact movie time (seconds from the stream start)."""

    time: Fraction
    frame: object  # av.VideoFrame

    def to_rgb(self, short_side: int | None = None) -> np.ndarray:
        return frame_to_array(self.frame, short_side, "rgb24")


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the short side reduced to ``short_side``; never enlarged; even numbers not required.

    >>> scaled_size(1280, 720, 256)
    (455, 256)
    >>> scaled_size(320, 240, 256)
    (320, 240)
    """
    if not short_side or short_side >= min(width, height):
        return width, height
    scale = short_side / min(width, height)
    if width <= height:
        return short_side, max(1, round(height * scale))
    return max(1, round(width * scale)), short_side


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a uint8 image (H, W, 3) or plane (H, W) down to (height, width): area-average halvings while it is at least
    twice the target, then one bilinear step (close to a full area filter, at a fraction of its cost)."""
    import cv2

    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if (image.shape[1], image.shape[0]) != (width, height):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image


_LIMITED_TO_FULL_Y = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_LIMITED_TO_FULL_C = np.clip(np.round((np.arange(256) - 128) * 255 / 224 + 128), 0, 255).astype(np.uint8)


def _plane(plane) -> np.ndarray:
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def planes_420(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool] | None:
    """The Y, U, V planes of a 4:2:0 ``av.VideoFrame`` (views, no copy) and whether they are full range; None for
    other pixel formats."""
    name = frame.format.name
    if name not in ("yuv420p", "yuvj420p"):
        return None
    y, u, v = (_plane(p) for p in frame.planes[:3])
    full_range = name == "yuvj420p" or int(getattr(frame, "color_range", 0) or 0) == 2
    return y, u, v, full_range


def encode_planes_jpeg(y: np.ndarray, u: np.ndarray, v: np.ndarray, full_range: bool, short_side: int | None = None,
                       quality: int = 90) -> tuple[bytes, int, int]:
    """JPEG bytes of 4:2:0 planes shrunk to ``short_side``; returns (bytes, width, height).

    The planes go to libjpeg-turbo as they are (JPEG is YCbCr 4:2:0 too), with video-range levels stretched to
    JPEG's full range: no RGB round trip.  Only reads the planes, so several threads may encode one frame at once.
    """
    import simplejpeg

    width, height = scaled_size(y.shape[1], y.shape[0], short_side)
    cw, ch = (width + 1) // 2, (height + 1) // 2
    y, u, v = shrink(y, width, height), shrink(u, cw, ch), shrink(v, cw, ch)
    if not full_range:
        import cv2

        y, u, v = cv2.LUT(y, _LIMITED_TO_FULL_Y), cv2.LUT(u, _LIMITED_TO_FULL_C), cv2.LUT(v, _LIMITED_TO_FULL_C)
    data = simplejpeg.encode_jpeg_yuv_planes(_even_luma(np.ascontiguousarray(y)), np.ascontiguousarray(u),
                                             np.ascontiguousarray(v), quality=int(quality))
    return data, width, height


def _even_luma(y: np.ndarray) -> np.ndarray:
    """``y`` as a view into a plane of even width and height (the edge repeated).

    libjpeg-turbo reads a 4:2:0 luma plane padded to the chroma grid (an even number of columns and rows); given
    an odd-sized array it reads a byte or a row past its end, and the JPEG's corner pixels then depend on
    whatever memory follows (measured: different bytes from run to run).  simplejpeg passes the row stride on,
    so a view of the true size into a padded plane encodes exactly the image, every time.
    """
    height, width = y.shape
    if not (height % 2 or width % 2):
        return y
    padded = np.empty((height + height % 2, width + width % 2), np.uint8)
    padded[:height, :width] = y
    padded[:height, width:] = y[:, -1:]
    padded[height:] = padded[height - 1]
    return padded[:height, :width]


def encode_frame_jpeg(frame, short_side: int | None = None, quality: int = 90, *, lock=None) -> tuple[bytes, int, int]:
    """JPEG bytes of an ``av.VideoFrame`` shrunk to ``short_side``; returns (bytes, width, height).

    4:2:0 frames go through :func:`encode_planes_jpeg`.  Other pixel formats go through BGR, under ``lock`` when
    given (PyAV's conversion of one frame is not thread-safe).
    """
    planes = planes_420(frame)
    if planes is not None:
        return encode_planes_jpeg(*planes, short_side, quality)
    from contextlib import nullcontext

    with lock if lock is not None else nullcontext():
        image = frame_to_array(frame, short_side, "bgr24")
    return encode_jpeg(image, quality), image.shape[1], image.shape[0]


def frame_to_array(frame, short_side: int | None = None, fmt: str = "bgr24") -> np.ndarray:
    """Convert an ``av.VideoFrame`` into a uint8 (H, W, 3) array, shrunk so its short side is ``short_side``."""
    width, height = scaled_size(frame.width, frame.height, short_side)
    image = frame.to_ndarray(format=fmt)
    if (width, height) == (frame.width, frame.height):
        return image
    return shrink(image, width, height)


def open_for_decoding(path: str | os.PathLike, *, threads: int = 0):
    """Open ``path`` and return (container, video stream) set up the way refava decodes.

    PyAV's default slice threading is kept: on H.264 it decoded faster here than frame threading ("AUTO").
    """
    container = _open(Path(path))
    stream = container.streams.video[0]
    if threads:
        stream.codec_context.thread_count = threads
    return container, stream


def iter_frames(path: str | os.PathLike, start_s: float | None = None, end_s: float | None = None,
                *, threads: int = 0) -> Iterator[DecodedFrame]:
    """Yield decoded frames with movie time in [start_s, end_s), in presentation order.

    Seeks once to the keyframe before ``start_s`` (and checks it landed before it), then decodes sequentially.
    Decoder errors raise :class:`VideoDecodeError` naming the file and the time reached.
    """
    path = Path(path)
    container, stream = open_for_decoding(path, threads=threads)
    try:
        start = Fraction(start_s) if start_s is not None else None
        end = Fraction(end_s) if end_s is not None else None
        for item in decode_from(container, stream, start, path=path):
            if start is not None and item.time < start:
                continue
            if end is not None and item.time >= end:
                break
            yield item
    finally:
        container.close()


LOOKAHEAD_PACKETS = 16  # more than the deepest B-frame reordering H.264 allows
REORDER_FRAMES = 16     # how far out of order a container's frame times may come


class _TimeReorder:
    """Gives decoded frames their times in presentation order.

    A decoder returns frames in presentation order, but some containers label them out of order: an AVI with
    packed B-frames (XviD, DivX) gives times 1, 2, 4, 3, 5, 7, 6, ... because its timestamps follow the stored
    chunks.  The times are right as a set, only misassigned; so frames are held back ``depth`` frames, and each
    leaves with the smallest time not yet given out.  For frames whose times already rise this changes nothing.
    """

    def __init__(self, depth: int = REORDER_FRAMES):
        import collections

        self.depth = depth
        self.frames: collections.deque = collections.deque()
        self.times: list[Fraction] = []

    def push(self, time: Fraction, frame) -> Iterator[DecodedFrame]:
        import heapq

        heapq.heappush(self.times, time)
        self.frames.append(frame)
        if len(self.frames) > self.depth:
            yield DecodedFrame(heapq.heappop(self.times), self.frames.popleft())

    def flush(self) -> Iterator[DecodedFrame]:
        import heapq

        while self.frames:
            yield DecodedFrame(heapq.heappop(self.times), self.frames.popleft())


def _packets_with_skips(container, stream, needed):
    """Demux packets and decide, for each, whether its frame may be skipped by the decoder.

    A frame can be the nearest frame to a target time s only if s lies strictly between the presentation times
    of its neighbours.  ``needed(prev_ticks, next_ticks)`` says whether any target lies in that open interval
    (times in stream ticks).  Packets are held in a short lookahead so neighbours are known despite B-frame
    reordering; a packet whose neighbours are not both known is never skipped.
    """
    import bisect
    from collections import deque

    buffer: deque = deque()
    known: list[int] = []          # sorted pts of packets around the head of the buffer
    done: deque = deque()

    def decide(packet):
        if packet.pts is None or not packet.size or packet.is_keyframe:
            return packet, False
        i = bisect.bisect_left(known, packet.pts)
        if i == 0 or i + 1 >= len(known) or known[i] != packet.pts:
            return packet, False
        return packet, not needed(known[i - 1], known[i + 1])

    for packet in container.demux(stream):
        buffer.append(packet)
        if packet.pts is not None:
            bisect.insort(known, packet.pts)
        if len(buffer) > LOOKAHEAD_PACKETS:
            head = buffer.popleft()
            yield decide(head)
            if head.pts is not None:
                done.append(head.pts)
                if len(done) > LOOKAHEAD_PACKETS:
                    old = done.popleft()
                    del known[bisect.bisect_left(known, old)]
    while buffer:
        yield buffer.popleft(), False


def _first_frame_time(container, stream, path: Path) -> Fraction | None:
    """The time stamp (seconds) of the first decoded frame of the file; the container is left at its start."""
    av = _av()
    tb = Fraction(stream.time_base)
    try:
        container.seek(0, stream=stream, backward=True, any_frame=False)
        first = None
        for frame in container.decode(stream):
            if frame.pts is not None:
                first = Fraction(frame.pts) * tb
            break
        container.seek(0, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(f"{path}: decoding the first frame failed ({exc}); the file may be damaged") from exc
    return first


def _clock(tb: Fraction, origin: Fraction) -> tuple[int, int, int]:
    """(time_num, origin_num, time_den): frame time = pts * tb - origin = (pts * time_num - origin_num) / time_den,
    one Fraction per frame."""
    return tb.numerator * origin.denominator, origin.numerator * tb.denominator, tb.denominator * origin.denominator


def _needed(targets: list[Fraction], origin: Fraction, tb: Fraction):
    """``needed(prev_ticks, next_ticks)``: whether a target time lies strictly between two packet times.  For
    integer p and n, a target time t (in ticks) lies in (p, n) exactly when ceil(t) > p and floor(t) < n: integer
    comparisons, no Fraction arithmetic per packet."""
    import bisect

    ticks = [(t + origin) / tb for t in targets]
    ceils = [math.ceil(t) for t in ticks]
    floors = [math.floor(t) for t in ticks]

    def needed(prev_ticks: int, next_ticks: int) -> bool:
        i = bisect.bisect_right(ceils, prev_ticks)
        return i < len(floors) and floors[i] < next_ticks
    return needed


def _seek(container, stream, seek_to: Fraction | None, origin: Fraction, tb: Fraction, path: Path) -> None:
    """Seek to the keyframe at or before movie time ``seek_to`` (None: the start of the movie)."""
    av = _av()
    try:
        container.seek(int(((seek_to if seek_to is not None else 0) + origin) / tb), stream=stream, backward=True,
                       any_frame=False)
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(f"{path}: seeking to {float(seek_to or 0):.3f} s failed ({exc})") from exc


def decode_from(container, stream, start: Fraction | None, *, path: Path, margin_s: float = 1.0,
                targets: list[Fraction] | None = None) -> Iterator[DecodedFrame]:
    """Decode from the last keyframe at or before ``start`` (from the beginning when None or near 0).

    After a seek the first frame must not be later than ``start``; if it is (a sparse index), seek earlier,
    down to the start of the file.  Frames keep their order; frame times are exact fractions.

    With ``targets`` (sorted movie times), frames that cannot be the nearest frame to any target and that no
    other frame depends on (non-reference frames) are not decoded at all: the frames that are yielded around
    each target are exactly those a full decode would give, at a fraction of the decoding cost.
    """
    av = _av()
    tb = Fraction(stream.time_base)
    origin = _stream_start(stream)
    rate = stream.average_rate or stream.guessed_rate
    step = Fraction(1, 1) / Fraction(rate) if rate else Fraction(1, 30)
    backoffs = [Fraction(margin_s), Fraction(10), Fraction(60)]
    ctx = stream.codec_context
    time_num, origin_num, time_den = _clock(tb, origin)
    needed = _needed(targets, origin, tb) if targets is not None else None
    # AVI timestamps follow the stored chunks, not the pictures (packed B-frames): packet times cannot tell which
    # frames are unneeded there, so nothing is skipped; and they come one decoder delay late, so the movie's
    # first frame, not the stream's start, is time 0
    skips_are_safe = "avi" not in (container.format.name or "").split(",")
    if not skips_are_safe:
        origin = _first_frame_time(container, stream, path) or origin
        time_num, origin_num, time_den = _clock(tb, origin)
    attempt = 0
    while True:
        seek_to = None
        if start is not None and attempt < len(backoffs) and start - backoffs[attempt] > 2:
            seek_to = start - backoffs[attempt]
        if seek_to is not None or attempt:
            _seek(container, stream, seek_to, origin, tb, path)
        first = True
        last_time: Fraction | None = None
        restarted = False
        skipping = False
        reorder = _TimeReorder()
        if targets is None or not skips_are_safe:
            packets = ((p, False) for p in container.demux(stream))
        else:
            packets = _packets_with_skips(container, stream, needed)
        try:
            for packet, skip in packets:
                if skip != skipping:
                    ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                    skipping = skip
                for frame in packet.decode():
                    if frame.pts is None:
                        time = (last_time + step) if last_time is not None else Fraction(0)
                    else:
                        time = Fraction(frame.pts * time_num - origin_num, time_den)
                    if first and seek_to is not None and start is not None and time > start:
                        attempt += 1
                        restarted = True
                        break
                    first = False
                    last_time = time
                    yield from reorder.push(time, frame)
                if restarted:
                    break
            if not restarted:
                yield from reorder.flush()
        except av.error.FFmpegError as exc:
            at = f"{float(last_time):.3f} s" if last_time is not None else "the first frame"
            raise VideoDecodeError(f"{path}: decoding failed after {at} ({exc}); the file may be truncated or "
                                   f"damaged: download it again") from exc
        finally:
            if skipping:
                ctx.skip_frame = "DEFAULT"
        if not restarted:
            return


def encode_jpeg(image_bgr: np.ndarray, quality: int = 90) -> bytes:
    """Encode a uint8 (H, W, 3) BGR array as JPEG bytes (OpenCV, deterministic for the same input)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise VideoDecodeError(f"JPEG encoding failed for an array of shape {image_bgr.shape}")
    return buf.tobytes()


def decode_jpeg(data: bytes, *, rgb: bool = True) -> np.ndarray:
    """Decode JPEG bytes into a uint8 (H, W, 3) array (RGB unless ``rgb=False``); raises on bad data."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise VideoDecodeError(f"cannot decode {len(data)} bytes as JPEG")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB) if rgb else arr


class VideoWriter:
    """Encode RGB frames into a video file; the codec follows the extension (.mp4/.mkv: H.264, .webm: VP9).

    >>> with VideoWriter("out.mp4", width=64, height=48, fps=30) as w:   # doctest: +SKIP
    ...     w.write(np.zeros((48, 64, 3), np.uint8))

    ``fps`` may be a Fraction (30000/1001).  For a variable frame rate, pass ``pts_s`` (movie time) to ``write``.
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, fps: Fraction | float | int = 30,
                 codec: str | None = None, crf: int = 18, time_base: Fraction | None = None):
        av = _av()
        self.path = Path(path)
        codec = codec or CODEC_FOR_SUFFIX.get(self.path.suffix)
        if codec is None:
            raise ValueError(f"{self.path}: unknown video extension {self.path.suffix!r}; use one of {sorted(CODEC_FOR_SUFFIX)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.part{self.path.suffix}")
        self._container = av.open(str(self._tmp), "w", format=None)
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream(codec, rate=rate)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        elif codec == "mpeg4":        # MPEG-4 Part 2 as XviD/DivX AVIs hold it: two B-frames between references
            self._stream.options = {"bf": "2", "g": "12", "qscale": "3"}
        elif codec == "libvpx-vp9":
            self._stream.options = {"crf": str(max(crf, 4)), "b:v": "0", "deadline": "realtime", "cpu-used": "8"}
        if time_base is not None:
            self._stream.codec_context.time_base = time_base
        self._rate = rate
        self._index = 0

    def write(self, image_rgb: np.ndarray, pts_s: Fraction | float | None = None) -> None:
        av = _av()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image_rgb), format="rgb24")
        if pts_s is not None:
            tb = self._stream.codec_context.time_base or Fraction(1, self._rate)
            frame.pts = int(round(Fraction(pts_s) / Fraction(tb)))
            frame.time_base = tb
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._index += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp, self.path)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._container.close()
            self._tmp.unlink(missing_ok=True)
