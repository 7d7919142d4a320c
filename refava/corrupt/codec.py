"""Codec corruptions through a real encoder (libx264 via PyAV), clip by clip, as Yi et al. build Mini Kinetics-C
(``create_mini_kinetics_c.py`` / ``create_mini_ssv2_c.py``, NeurIPS 2021), in memory instead of ffmpeg subprocesses:

* ``h264_crf``: H.264 at constant quality, CRF 23, 30, 37, 44, 51;
* ``h264_abr``: H.264 at a fixed bitrate: the clip's own CRF 23 bitrate divided by 2, 4, 8, 16, 32 (Yi divide the
  source file's bitrate; a clip of stored frames has none, so its CRF 23 encode stands for it), with
  ``maxrate = bufsize = bitrate`` as theirs;
* ``bit_error``: the CRF 23 stream with one byte in 100000, 50000, 30000, 20000, 10000 replaced by a random one
  (ffmpeg's ``noise`` bitstream filter, which they use), parameter sets spared as a container's extradata would
  be; the damaged stream is decoded by libavcodec, which conceals damaged macroblocks, and a frame it cannot
  decode shows the previous one (the first, mid grey), so the result always decodes to the clip's length.

The clip's frames of one size are encoded as one 30 fps stream in time order (odd sizes padded by one pixel and
cropped back); a keyframe of another size is encoded alone, as one intra frame.  The encoder runs with one thread
and fixed settings (no macroblock tree: with it, x264 gave other bytes for the same frames after other encodes in
the same process) on frames converted to I420 by OpenCV (and back), so the same frames give the same bytes; bit
errors are drawn from the clip's generator.  The first (IDR) frame is spared by bit errors: damaged, it left
macroblocks that no decoder fills with anything defined.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

H264_CRF = (23, 30, 37, 44, 51)
H264_ABR_DIVISOR = (2, 4, 8, 16, 32)
BIT_ERROR_ONE_IN = (100000, 50000, 30000, 20000, 10000)
CODEC = ("h264_crf", "h264_abr", "bit_error")
# one thread, and no macroblock tree (its lookahead gave other bytes for the same frames after other encodes in the
# same process; found by tests/corrupt/test_codec_temporal.py)
_OPTIONS = {"preset": "medium", "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:mbtree=0:rc-lookahead=0"}


def _encode(frames: list[np.ndarray], options: dict) -> list[bytes]:
    """The H.264 packets of ``frames`` (all one even size), in decoding order."""
    import av
    import cv2

    height, width = frames[0].shape[:2]
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    from fractions import Fraction

    codec.time_base = Fraction(1, 30)
    codec.framerate = Fraction(30, 1)
    codec.thread_count = 1
    codec.options = {**_OPTIONS, **options}
    packets = []
    for k, image in enumerate(frames):
        # our own conversion to I420 (OpenCV): PyAV's swscale path gave, rarely, other bytes for the same frames
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        frame.pts = k
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets


def _decode(packets: list[bytes], n: int, shape: tuple[int, int]) -> list[np.ndarray]:
    """Decode ``packets`` into n frames of ``shape``; undecodable ones show the previous frame."""
    import av
    import cv2

    codec = av.CodecContext.create("h264", "r")
    codec.thread_count = 1
    decoded = []
    for data in [*packets, None]:
        try:
            frames = codec.decode(av.Packet(data) if data is not None else None)
        except (av.error.FFmpegError, ValueError):
            continue
        for frame in frames:
            if (frame.height, frame.width) != shape or frame.format.name != "yuv420p":
                continue
            planes = frame.to_ndarray()                          # I420 as (3/2 H, W), converted back by OpenCV
            decoded.append(cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420))
    out, last = [], np.full((*shape, 3), 128, dtype=np.uint8)
    for k in range(n):
        if k < len(decoded):
            last = decoded[k]
        out.append(last)
    return out


def _nal_payloads(packet: bytes) -> list[tuple[int, int]]:
    """(start, end) of each slice NAL's bytes after its header (Annex B start codes); parameter sets are skipped."""
    starts = []
    i = packet.find(b"\x00\x00\x01")
    while i != -1:
        starts.append(i + 3)
        i = packet.find(b"\x00\x00\x01", i + 3)
    spans = []
    for k, s in enumerate(starts):
        end = (starts[k + 1] - 3) if k + 1 < len(starts) else len(packet)
        if s < len(packet) and packet[s] & 0x1F in (1, 5) and end > s + 1:
            spans.append((s + 1, end))
    return spans


def _bit_errors(packets: list[bytes], one_in: int, rng: np.random.Generator) -> list[bytes]:
    out = [packets[0]] if packets else []          # the first (IDR) frame is spared: see the module doc
    for packet in packets[1:]:
        data = bytearray(packet)
        for start, end in _nal_payloads(packet):
            # both draws for every byte, whatever the rate: with one generator, a higher rate damages a superset
            u, values = rng.random(end - start), rng.integers(0, 256, end - start)
            for h in np.flatnonzero(u < 1.0 / one_in):
                data[start + int(h)] = int(values[h])
        out.append(bytes(data))
    return out


def _even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else image


def _stream(frames: list[np.ndarray], kind: str, severity: int, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = frames[0].shape[:2]
    even = [_even(np.ascontiguousarray(f)) for f in frames]
    shape = even[0].shape[:2]
    if kind == "h264_crf":
        packets = _encode(even, {"crf": str(H264_CRF[severity - 1])})
    else:
        reference = _encode(even, {"crf": "23"})
        if kind == "h264_abr":
            seconds = len(even) / 30.0
            rate = max(1000, int(sum(len(p) for p in reference) * 8 / seconds / H264_ABR_DIVISOR[severity - 1]))
            packets = _encode(even, {"b": str(rate), "maxrate": str(rate), "bufsize": str(rate)})
        else:
            packets = _bit_errors(reference, BIT_ERROR_ONE_IN[severity - 1], rng)
    return [f[:h, :w] for f in _decode(packets, len(even), shape)]


def recode(frames: Sequence[np.ndarray], kind: str, severity: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The clip's frames through the codec corruption (see the module doc)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(frames):
        groups.setdefault(f.shape[:2], []).append(i)
    main = max(groups, key=lambda s: len(groups[s]))
    out: list[np.ndarray | None] = [None] * len(frames)
    for size in [main, *sorted(s for s in groups if s != main)]:
        members = groups[size]
        streams = [members] if size == main else [[i] for i in members]      # an off-size keyframe: alone
        for chunk in streams:
            for i, image in zip(chunk, _stream([frames[i] for i in chunk], kind, severity, rng)):
                out[i] = np.ascontiguousarray(image)
    return out  # type: ignore[return-value]
