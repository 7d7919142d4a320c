"""Does the stored corrupted frame keep the noise formula?  Gaussian and shot noise measured on frames as refava
stores them (``refava.corrupt.stage.encode_stored``) against the unstored output, at every severity, and the size
cost against the storage used before (JPEG quality 90).

On a mid-grey 340x256 frame and on a smooth gradient (so JPEG sees structure too), the noise sigma is the standard
deviation of (frame - clean) / 255.  Printed per type and severity: the formula's parameter (Gaussian sigma, shot-noise photon count c), the unstored
output's (exact: clipping at 0 and 1 lowers it at high severities), the stored frame's, its ratio to the unstored
one (target: within 3 %), what the previous storage (quality 90) gave, and the bytes per frame of both.

    python benchmarks/noise_storage.py [--frames 8]
"""
from __future__ import annotations

import argparse

import numpy as np
import simplejpeg

from refava.corrupt import corrupt_frames, resolve
from refava.corrupt.stage import encode_stored, storage_for

HEIGHT, WIDTH = 256, 340


def scenes() -> dict[str, np.ndarray]:
    grey = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    x = np.linspace(0, 1, WIDTH)[None, :, None]
    ramp = np.clip(70 + 90 * x + 50 * y + np.array([0, 10, -10]), 0, 255).astype(np.uint8)
    return {"grey": grey, "gradient": ramp}


def sigma(frames, clean) -> float:
    return float(np.std(np.stack(frames).astype(np.float64) - clean.astype(np.float64)) / 255)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    print(f"{'type':<15}{'sev':>4}{'scene':>10}{'nominal':>9}{'unstored':>10}{'stored':>9}{'ratio':>8}"
          f"{'before (q90)':>13}{'bytes':>9}{'q90 bytes':>11}")
    worst = 0.0
    for kind in ("gaussian_noise", "shot_noise"):
        for severity in range(1, 6):
            spec = resolve(kind, severity)
            storage = storage_for(spec, 90)
            for name, clean in scenes().items():
                raw = corrupt_frames([clean] * args.frames, spec, np.random.default_rng(severity))
                stored, cheap = [], []
                nbytes = cheap_bytes = 0
                for frame in raw:
                    data = encode_stored(frame, storage)
                    nbytes += len(data)
                    stored.append(simplejpeg.decode_jpeg(data, colorspace="RGB"))
                    data = simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=90, colorspace="RGB")
                    cheap_bytes += len(data)
                    cheap.append(simplejpeg.decode_jpeg(data, colorspace="RGB"))
                s_raw, s_stored, s_cheap = sigma(raw, clean), sigma(stored, clean), sigma(cheap, clean)
                ratio = s_stored / s_raw
                worst = max(worst, abs(ratio - 1))
                nominal = spec.params.get("sigma", spec.params.get("c"))
                print(f"{kind:<15}{severity:>4}{name:>10}{nominal!s:>9}{s_raw:>10.4f}{s_stored:>9.4f}{ratio:>8.3f}"
                      f"{s_cheap:>13.4f}{nbytes // args.frames:>9}{cheap_bytes // args.frames:>11}")
    print(f"storage {storage_for(resolve('gaussian_noise', 1), 90)}: worst |stored / unstored - 1| = {worst:.4f} "
          f"(target <= 0.03)")


if __name__ == "__main__":
    main()
