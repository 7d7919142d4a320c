"""refava's corruptions against their reference implementations, in frames per second, in the same run.

On 8-frame 340x256 clips (random content plus a smooth gradient, so fog and rain see real structure):

* gaussian_noise, shot_noise, fog: refava's ``corrupt_clip`` on whole clips against ``imagecorruptions.corrupt``
  per frame (its PyPI release needs ``np.float_`` on NumPy 2; the benchmark sets it);
* brightness, contrast, saturate: against ``imagecorruptions.corrupt`` per frame (brightness and saturate are the
  tables the RAVAR authors use; contrast runs imagecorruptions' own table, the formula is the same);
* motion_blur (the authors' temporal one, not imagecorruptions' spatial one): against the authors' loop
  (``np.sum(clip[i - c:i + c], axis=0, dtype=float) / (2c)`` per frame), transcribed below, on 32-frame clips
  (on 8 frames their loop makes no frame from severity 4 on), each side's rate counting the frames it makes;
* rain: against the reference per-drop loop (Yi et al.'s streaks: a Python loop drawing one ``cv2.line`` per drop,
  then float64 frame arithmetic), re-implemented below from its description in the reference notes, since the
  reference ships no package.

Printed per corruption and severity: both frame rates and their ratio (target: refava >= 10x each).  Needs
``pip install imagecorruptions --no-deps scikit-image scipy`` (``make bench`` does it; its dependency opencv-python
would replace the headless OpenCV refava pins; its ``pkg_resources`` import, gone from setuptools >= 81, is shimmed).

    python benchmarks/corrupt.py [--severities 1,3,5] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import cv2
import numpy as np

from refava.corrupt import clip_rng, corrupt_clip

FRAMES, HEIGHT, WIDTH = 8, 256, 340
LONG = 32                   # motion blur's clips (the authors' loop makes 32 - 2c frames of each)


def make_clips(n: int, seed: int = 0, frames: int = FRAMES) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, WIDTH)[None, :, None] + np.linspace(0, 40, HEIGHT)[:, None, None]
    clips = []
    for _ in range(n):
        noise = rng.normal(0, 25, (frames, HEIGHT, WIDTH, 3))
        clips.append(np.clip(ramp[None] + noise, 0, 255).astype(np.uint8))
    return clips


def reference_rain(image: np.ndarray, severity: int, rs: np.random.RandomState) -> np.ndarray:
    """The reference streak rain, per drop in Python and in float64 over the frame, as the peers run it."""
    area = image.shape[0] * image.shape[1]
    drops = area // (770, 770, 770, 500, 400)[severity - 1]
    length = (10, 30, 60, 60, 80)[severity - 1]
    darken = (0.8, 0.8, 0.7, 0.6, 0.5)[severity - 1]
    slant = rs.randint(-10, 10)
    points = []
    for _ in range(drops):
        x = rs.randint(slant, image.shape[1]) if slant < 0 else rs.randint(0, image.shape[1] - slant)
        points.append((x, rs.randint(0, image.shape[0] - length)))
    mask = np.zeros(image.shape[:2])
    for x, y in points:
        cv2.line(mask, (x, y), (x + slant, y + length), (220, 220, 220), 1)
    mask = np.stack((mask, mask, mask), axis=2)
    rainy = image + np.array(mask * (1 - image / 255.0) * (1 - np.mean(image) / 255.0), dtype=np.uint8)
    blurred = cv2.blur(rainy, (3, 3))
    mixed = np.array(blurred * mask / 255.0 + image * (1 - mask / 255.0)) / 255.0
    means = np.mean(mixed, axis=(0, 1), keepdims=True)
    return np.array(np.clip((mixed - means) * darken + means, 0, 1) * 255, dtype=np.uint8)


def authors_motion_blur(clip: np.ndarray, severity: int) -> list[np.ndarray]:
    """The RAVAR authors' motion blur (their loop, which drops c frames at each end)."""
    c = (1, 2, 3, 4, 6)[severity - 1]
    return [np.array(np.sum(clip[i - c:i + c], axis=0, dtype=np.float64) / (2.0 * c), dtype=np.uint8)
            for i in range(c, clip.shape[0] - c)]


def fps_pair(ours, peer, clips, repeats: int, made=(FRAMES, FRAMES)) -> tuple[float, float, float]:
    """Median frame rates of ``ours`` and ``peer`` and the median of their per-repeat ratios.  The two alternate
    within each repeat, and ``ours`` loops over the clips as many times as it takes to fill about as long a window as
    one pass of ``peer`` (a tenth of it would otherwise be timed), so a disturbance of the machine lands on both.
    ``made``: the frames each makes of a clip (the authors' motion blur drops 2c)."""
    start = time.perf_counter()
    ours(clips[0])
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    peer(clips[0])
    t_peer = time.perf_counter() - start
    loops = max(1, min(50, round(t_peer / max(t_ours, 1e-9))))
    rates = []
    for _ in range(repeats):
        pair = []
        for fn, n, frames in ((ours, loops, made[0]), (peer, 1, made[1])):
            start = time.perf_counter()
            for _ in range(n):
                for clip in clips:
                    fn(clip)
            pair.append(n * len(clips) * frames / (time.perf_counter() - start))
        rates.append(pair)
    return (statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates),
            statistics.median(r[0] / r[1] for r in rates))


def _pkg_resources_shim() -> None:
    """imagecorruptions imports ``pkg_resources.resource_filename`` (for its frost images), which setuptools >= 81
    no longer ships: stand in with importlib.resources when it is missing."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import importlib.resources
        import types

        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)
        sys.modules["pkg_resources"] = shim


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--severities", default="1,3,5")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clips", type=int, default=12, help="clips per timing (longer windows: steadier figures)")
    args = ap.parse_args(argv)
    np.float_ = np.float64  # imagecorruptions' fog on NumPy 2
    _pkg_resources_shim()
    from imagecorruptions import corrupt as ic_corrupt

    clips = make_clips(args.clips)
    long_clips = make_clips(max(2, args.clips // 4), frames=LONG)
    severities = [int(s) for s in args.severities.split(",")]
    rng = clip_rng(1, "benchmark___0902", "bench")          # the generator the stage uses
    rs = np.random.RandomState(1)
    print(f"{FRAMES}-frame {WIDTH}x{HEIGHT} clips, {args.clips} clips x {args.repeats} repeats, median frames/s")
    from refava.corrupt import noise, rain

    print(f"rain streaks computed by: {rain.BACKEND}; Gaussian noise by: {noise.BACKEND}"
          + ("" if rain.BACKEND == "jit" else " (install numba, refava[fast], for the compiled kernels)"))
    print(f"{'corruption':<16}{'sev':>4}{'refava':>10}{'peer':>9}{'ratio':>8}   peer")
    worst = blur = float("inf")
    for kind in ("gaussian_noise", "shot_noise", "fog", "rain", "brightness", "contrast", "saturate", "motion_blur"):
        for sev in severities:
            if kind == "rain":
                peer_fn, peer_name = (lambda c: [reference_rain(f, sev, rs) for f in c]), "reference rain loop"
            elif kind == "motion_blur":
                peer_fn, peer_name = (lambda c: authors_motion_blur(c, sev)), "the authors' loop"
            else:
                peer_fn = lambda c: [ic_corrupt(f, corruption_name=kind, severity=sev) for f in c]  # noqa: E731
                peer_name = "imagecorruptions"
            if kind == "motion_blur":         # over time: 32-frame clips, so that the authors' loop, which drops
                c = (1, 2, 3, 4, 6)[sev - 1]  # c frames at each end, has frames to make; each counted by its own
                ours, peer, ratio = fps_pair(lambda c_: corrupt_clip(c_, kind, sev, rng), peer_fn, long_clips,
                                             args.repeats, made=(LONG, LONG - 2 * c))
                blur = min(blur, ratio)       # over time, not 2-D: outside the 10x target, printed apart
            else:
                ours, peer, ratio = fps_pair(lambda c: corrupt_clip(c, kind, sev, rng), peer_fn, clips, args.repeats)
                worst = min(worst, ratio)
            print(f"{kind:<16}{sev:>4}{ours:>10.0f}{peer:>9.0f}{ratio:>7.1f}x   {peer_name}")
    for kind in ("gaussian_noise", "shot_noise", "rain"):
        ours, _, _ = fps_pair(lambda c: corrupt_clip(c, kind, None, rng, preset="paper"), lambda c: None, clips, 3)
        print(f"{kind:<16}{'paper':>5}{ours:>9.0f}   (the preset; no peer)")
    print(f"smallest ratio: {worst:.1f}x (2-D types against imagecorruptions and the reference rain; target >= 10x)")
    print(f"motion blur against the authors' loop: smallest {blur:.1f}x (no target: a NumPy loop like refava's)")
    return 0 if worst >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
