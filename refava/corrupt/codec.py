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

A clip's CRF-23 encode serves eleven settings (h264_crf severity 1, every h264_abr severity for its bitrate, every
bit_error severity for its stream): :class:`Encodes` keeps encodes, in memory and, for ``refava corrupt``, on disk
in the workspace (``cache/h264/``), keyed by the frames' bytes, the encoder's settings and the library versions, so
each is paid once per clip whichever settings need it (the same bytes as encoding again: the encoder is
deterministic, tested).
"""
from __future__ import annotations

import functools
import hashlib
import struct
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

H264_CRF = (23, 30, 37, 44, 51)
H264_ABR_DIVISOR = (2, 4, 8, 16, 32)
BIT_ERROR_ONE_IN = (100000, 50000, 30000, 20000, 10000)
CODEC = ("h264_crf", "h264_abr", "bit_error")
REFERENCE_CRF = 23           # the stream bit errors damage and whose bitrate h264_abr divides (and h264_crf's first)
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


class Encodes:
    """H.264 encodes of clips, reused between settings: the last ``keep`` in memory and, with ``root``, every one on
    disk (``root/ab/<key>.h264``: the packets, length-prefixed, then the sha256 of all before; a damaged or torn
    entry is encoded again and rewritten).  The key covers everything that changes the bytes: the frames (bytes and
    size), the encoder's options, PyAV's, libavcodec's and x264's versions and this file format.  Safe across
    threads and, through atomic renames, across processes sharing ``root``."""

    FORMAT = b"refava-h264 1\n"

    def __init__(self, root: str | Path | None = None, keep: int = 8):
        self.root = Path(root) if root is not None else None
        self.keep = keep
        self.encoded = self.reused = 0                 # counts, for a summary
        self._memory: OrderedDict[str, list[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(frames: list[np.ndarray], options: dict) -> str:
        import av

        digest = hashlib.sha256(Encodes.FORMAT)
        settings = sorted({**_OPTIONS, **options}.items())
        digest.update(repr((av.__version__, av.library_versions.get("libavcodec"), _x264_build(), settings)).encode())
        for frame in frames:
            digest.update(repr(frame.shape).encode())
            digest.update(np.ascontiguousarray(frame).data)
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.h264"

    def encode(self, frames: list[np.ndarray], options: dict) -> list[bytes]:
        """:func:`_encode`'s packets for ``frames`` and ``options``, from the cache when there."""
        key = self.key(frames, options)
        with self._lock:
            packets = self._memory.get(key)
            if packets is not None:
                self._memory.move_to_end(key)
        if packets is None and self.root is not None:
            packets = self._read(self.path(key))
        if packets is None:
            packets = _encode(frames, options)
            if self.root is not None:
                self._write(self.path(key), packets)
            with self._lock:
                self.encoded += 1
        else:
            with self._lock:
                self.reused += 1
        with self._lock:
            self._memory[key] = packets
            while len(self._memory) > self.keep:
                self._memory.popitem(last=False)
        return packets

    def _read(self, path: Path) -> list[bytes] | None:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        body, check = data[:-32], data[-32:]
        if len(data) < len(self.FORMAT) + 36 or not body.startswith(self.FORMAT) or \
                hashlib.sha256(body).digest() != check:
            return None                                    # damaged or torn: encoded again, then rewritten
        view, at = memoryview(body), len(self.FORMAT)
        (count,) = struct.unpack_from("<I", view, at)
        sizes = struct.unpack_from(f"<{count}I", view, at + 4)
        at += 4 + 4 * count
        packets = []
        for size in sizes:
            packets.append(bytes(view[at:at + size]))
            at += size
        return packets if at == len(body) else None

    def _write(self, path: Path, packets: list[bytes]) -> None:
        from ..errors import DiskFullError, StageError
        from ..fsutil import atomic_path

        body = b"".join([self.FORMAT, struct.pack(f"<I{len(packets)}I", len(packets), *map(len, packets)), *packets])
        try:
            with atomic_path(path) as tmp:                 # no fsync: a torn entry fails its checksum
                tmp.write_bytes(body + hashlib.sha256(body).digest())
        except DiskFullError:
            raise
        except OSError as exc:
            raise StageError(f"cannot keep a clip's reference encode at {path} ({exc.strerror or exc}): {self.root} "
                             f"must be a folder this user can write (it holds only encodes refava can make again: "
                             f"remove it, or fix its permissions) and rerun; finished movies are kept") from None


@functools.lru_cache(maxsize=1)
def _x264_build() -> str:
    """The linked x264's own version ("x264 - core 165 r..."), from the text it writes into every stream: a PyAV
    built against another x264 than its wheel's gives other bytes under the same PyAV version."""
    data = b"".join(_encode([np.zeros((16, 16, 3), dtype=np.uint8)], {"crf": "23"}))
    start = data.find(b"x264 - core")
    return data[start:data.find(b" - H.264", start)].decode("ascii", "replace") if start >= 0 else "unknown"


_MEMORY = Encodes()          # the library's default: the last few encodes of this process (a clip's severities)


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


def _stream(frames: list[np.ndarray], kind: str, severity: int, rng: np.random.Generator,
            encodes: Encodes) -> list[np.ndarray]:
    h, w = frames[0].shape[:2]
    even = [_even(np.ascontiguousarray(f)) for f in frames]
    shape = even[0].shape[:2]
    if kind == "h264_crf" and H264_CRF[severity - 1] != REFERENCE_CRF:
        packets = _encode(even, {"crf": str(H264_CRF[severity - 1])})
    else:
        reference = packets = encodes.encode(even, {"crf": str(REFERENCE_CRF)})       # kept: see Encodes
        if kind == "h264_abr":
            seconds = len(even) / 30.0
            rate = max(1000, int(sum(len(p) for p in reference) * 8 / seconds / H264_ABR_DIVISOR[severity - 1]))
            packets = _encode(even, {"b": str(rate), "maxrate": str(rate), "bufsize": str(rate)})
        elif kind == "bit_error":
            packets = _bit_errors(reference, BIT_ERROR_ONE_IN[severity - 1], rng)
    return [f[:h, :w] for f in _decode(packets, len(even), shape)]


def recode(frames: Sequence[np.ndarray], kind: str, severity: int, rng: np.random.Generator,
           encodes: Encodes | None = None) -> list[np.ndarray]:
    """The clip's frames through the codec corruption (see the module doc); ``encodes`` keeps the CRF encodes
    (default: the last few of this process, in memory)."""
    encodes = _MEMORY if encodes is None else encodes
    groups: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(frames):
        groups.setdefault(f.shape[:2], []).append(i)
    main = max(groups, key=lambda s: len(groups[s]))
    out: list[np.ndarray | None] = [None] * len(frames)
    for size in [main, *sorted(s for s in groups if s != main)]:
        members = groups[size]
        streams = [members] if size == main else [[i] for i in members]      # an off-size keyframe: alone
        for chunk in streams:
            for i, image in zip(chunk, _stream([frames[i] for i in chunk], kind, severity, rng, encodes)):
                out[i] = np.ascontiguousarray(image)
    return out  # type: ignore[return-value]
