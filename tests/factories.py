"""Factories for tiny test data: videos whose frames carry their own index, AVA csv rows, instances."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from refava.video import VideoWriter

BITS = 16          # frame index bits, drawn as a 4x4 grid of black/white blocks
GRID = 4


def index_image(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose top-left square encodes ``index`` in 16 black/white blocks; the rest is a mid-grey ramp."""
    img = np.full((height, width, 3), 128, np.uint8)
    img[:, :, 0] = (np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8)[None, :]
    block = min(width, height) // (GRID + 1)
    for bit in range(BITS):
        r, c = divmod(bit, GRID)
        value = 255 if (index >> bit) & 1 else 0
        img[r * block:(r + 1) * block, c * block:(c + 1) * block] = value
    return img


def read_index(img: np.ndarray, orig_width: int | None = None, orig_height: int | None = None) -> int:
    """Read back the index drawn by :func:`index_image` (from an image of any scale)."""
    h, w = img.shape[:2]
    ow, oh = orig_width or w, orig_height or h
    block = min(ow, oh) // (GRID + 1)
    gray = img.mean(axis=2)
    value = 0
    for bit in range(BITS):
        r, c = divmod(bit, GRID)
        y = int(((r + 0.5) * block) * h / oh)
        x = int(((c + 0.5) * block) * w / ow)
        if gray[y, x] > 128:
            value |= 1 << bit
    return value


def make_indexed_video(path: str | Path, n_frames: int, *, fps: Fraction | float = 30, width: int = 160,
                       height: int = 120, pts_s: Sequence[Fraction] | None = None,
                       time_base: Fraction | None = None) -> list[Fraction]:
    """Encode a video whose frame i shows the number i; return the presentation time of every frame.

    ``pts_s`` gives explicit times (variable frame rate); otherwise frame i is at i / fps.
    """
    fps = Fraction(fps).limit_denominator(1001)
    times = list(pts_s) if pts_s is not None else [Fraction(i) / fps for i in range(n_frames)]
    with VideoWriter(path, width=width, height=height, fps=fps, time_base=time_base) as writer:
        for i, t in enumerate(times):
            writer.write(index_image(i, width, height), pts_s=t if pts_s is not None else None)
    return times


def _mpeg4_packets(n_frames: int, fps: int, width: int, height: int, b_frames: int) -> list[tuple[bytes, int, int]]:
    """MPEG-4 Part 2 packets (bytes, pts, dts) of an indexed video, in decode order, with B-frames."""
    import av

    codec = av.CodecContext.create("mpeg4", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, fps)
    codec.framerate = Fraction(fps)
    codec.options = {"bf": str(b_frames), "g": "12", "qscale": "3"}
    out = []
    for i in range(n_frames):
        frame = av.VideoFrame.from_ndarray(index_image(i, width, height), format="rgb24")
        frame.pts = i
        out += [(bytes(p), p.pts, p.dts) for p in codec.encode(frame)]
    out += [(bytes(p), p.pts, p.dts) for p in codec.encode(None)]
    return sorted(out, key=lambda x: x[2])


def _n_vop(time_increment_bits: int, time_increment: int) -> bytes:
    """A not-coded P-VOP (the placeholder of packed bitstreams): start code, type P, modulo_time_base 0, marker,
    vop_time_increment, marker, vop_coded = 0, then MPEG-4 stuffing to a byte boundary."""
    bits = "01" + "0" + "1" + format(time_increment, f"0{time_increment_bits}b") + "1" + "0"
    bits += "0" + "1" * ((8 - (len(bits) + 1) % 8) % 8)
    return b"\x00\x00\x01\xb6" + int(bits, 2).to_bytes(len(bits) // 8, "big")


def make_packed_bframes_avi(path: str | Path, n_frames: int, *, fps: int = 25, width: int = 160, height: int = 120,
                            b_frames: int = 2, packed: bool = True) -> list[Fraction]:
    """An AVI of an indexed video with MPEG-4 B-frames as XviD/DivX write them; return the frame times (i / fps).

    ``packed`` stores each reference frame with the first B-frame after it in one chunk, the other B-frames in
    their own chunks, and a not-coded VOP after them (DivX's "packed bitstream", flagged by the user data
    ``DivX503b1393p``), so the chunks keep one per frame interval; otherwise the chunks are in decode order.
    """
    import av

    packets = _mpeg4_packets(n_frames, fps, width, height, b_frames)
    chunks: list[tuple[bytes, bool]] = []
    if not packed:
        chunks = [(data, pts % 12 == 0 and dts <= 0 or dts == -1) for data, pts, dts in packets]
    else:
        first = packets[0][0]
        at = first.index(b"\x00\x00\x01\xb6")
        packets[0] = (first[:at] + b"\x00\x00\x01\xb2DivX503b1393p" + first[at:],) + packets[0][1:]
        bits = max(1, (fps - 1).bit_length())                 # the encoder's vop_time_increment_resolution is fps
        i = 0
        while i < len(packets):
            data, pts, _ = packets[i]
            j = i + 1
            while j < len(packets) and packets[j][1] < pts:   # the B-frames shown before this reference
                j += 1
            bs = packets[i + 1:j]
            if not bs:
                chunks.append((data, i == 0 or pts % 12 == 0))
            else:
                chunks.append((data + bs[0][0], pts % 12 == 0))
                chunks.extend((b[0], False) for b in bs[1:])
                chunks.append((_n_vop(bits, pts % fps), False))
            i = j
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), "w", format="avi")
    stream = container.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for k, (data, key) in enumerate(chunks):
        packet = av.Packet(data)
        packet.stream = stream
        packet.pts = packet.dts = k
        packet.time_base = Fraction(1, fps)
        packet.is_keyframe = key
        container.mux(packet)
    container.close()
    return [Fraction(i, fps) for i in range(n_frames)]


def make_instances_for_checks(instance_ids):
    """Instances with the given ids ("video___TTTT___person"), side by side boxes, for annotation checks."""
    from refava.records import Instance

    out = []
    for iid in instance_ids:
        video, t, person = iid.rsplit("___", 2)
        x = 0.05 + 0.3 * int(person)
        out.append(Instance(iid, f"{video}___{t}", video, int(t), int(person), (x, 0.1, x + 0.25, 0.9), (12,), "x"))
    return out
