"""refava's PyTorch loading path against ``datasets``' own image decoding, in rows per second, in the same run.

On an AVA-shaped packaged dataset (benchmarks/package.py's ``ava-like`` workspace: 30 movies of 12 clips, 1 to 4
people per clip, keyframe plus 8 sampled 340x256 JPEGs per clip, packaged with ``refava package``), the train split
is read completely, every image decoded to a uint8 array, by

* ``datasets``: ``load_dataset(folder, split="train")`` iterated row by row, ``np.asarray`` of the keyframe and of
  every frame (PIL decodes each image of each row);
* refava: ``torch.utils.data.DataLoader(RefAVAFrames(folder, split="train"), batch_size=32,
  collate_fn=collate)`` (each distinct JPEG of a batch decoded once with libjpeg-turbo, on a few threads), at the
  stored size (the same pixels), and resized to 224x224 as a training pipeline would (not compared).

Printed: both rates and their ratio (target >= 3x).  The two alternate within each repeat; the ratio is the
median of the per-repeat ratios.

    python benchmarks/load.py [--repeats 3] [--dataset PACKAGED_FOLDER]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def build(root: Path) -> Path:
    from package import build_ava_like

    ws = build_ava_like(root)
    proc = subprocess.run([sys.executable, "-m", "refava", "package", "--no-progress"], cwd=ws,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"refava package failed:\n{proc.stderr}")
    return ws / "refava"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dataset", type=Path, help="a packaged folder (default: build the AVA-shaped one)")
    args = ap.parse_args(argv)
    import datasets
    import torch

    from refava.loader import RefAVAFrames, collate

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dataset or build(Path(tmp))
        ds = datasets.load_dataset(str(folder), split="train", cache_dir=os.path.join(tmp, "cache"))
        ours = RefAVAFrames(folder, split="train")
        resized = RefAVAFrames(folder, split="train", size=224)
        n = len(ds)
        images = n * (1 + len(ds[0]["frames"]))
        print(f"{folder}: train, {n} rows, {images} images per pass, {os.cpu_count()} CPUs")

        def with_datasets():
            total = 0
            for row in ds:
                total += np.asarray(row["keyframe"]).shape[0]
                for frame in row["frames"]:
                    total += np.asarray(frame).shape[0]
            return total

        def with_refava(data):
            def run():
                total = 0
                for batch in torch.utils.data.DataLoader(data, batch_size=32, collate_fn=collate):
                    total += batch["keyframe"].shape[0]
                return total
            return run

        with_datasets(), with_refava(ours)()                      # warm: files in the page cache, pools started
        rates = []
        for _ in range(args.repeats):
            row = []
            for fn in (with_datasets, with_refava(ours), with_refava(resized)):
                start = time.perf_counter()
                fn()
                row.append(n / (time.perf_counter() - start))
            rates.append(row)
        theirs = statistics.median(r[0] for r in rates)
        mine = statistics.median(r[1] for r in rates)
        small = statistics.median(r[2] for r in rates)
        ratio = statistics.median(r[1] / r[0] for r in rates)
        print(f"{'datasets (PIL per row)':<36}{theirs:>10.0f} rows/s")
        print(f"{'refava loader, stored size':<36}{mine:>10.0f} rows/s   {ratio:.1f}x   (target >= 3x)")
        print(f"{'refava loader, 224x224':<36}{small:>10.0f} rows/s")
    return 0 if ratio >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
