"""Streaming RefAVA from refava's WebDataset shards against reading the packaged Parquet dataset, in rows per
second, in the same run.

On an AVA-shaped packaged dataset (benchmarks/package.py's ``ava-like`` workspace; or ``--dataset``), exported with
``refava export --format webdataset``, the train split is read completely, every JPEG's bytes in hand (no decoding:
both paths hand the same bytes to the same decoder, so decoding would only add the same cost to both), by

* Parquet (the baseline): ``datasets.load_dataset(folder, split="train")`` with its images cast to undecoded
  bytes, iterated row by row;
* WebDataset: ``webdataset.WebDataset(shards)`` iterated sample by sample, the row's JSON parsed.

Also printed: the export's own speed (rows per second written, with 1 and with 4 workers).  The two reads alternate
within each repeat; the ratio is the median of the per-repeat ratios (WebDataset over Parquet).

    python benchmarks/export_webdataset.py [--repeats 3] [--dataset PACKAGED_FOLDER]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def export(folder: Path, out: Path, workers: int) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "refava", "export", "--format", "webdataset", "--dataset", str(folder),
                           "--out", str(out), "--split", "train", "--workers", str(workers), "--shard-size", "64MB",
                           "--no-progress"], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"refava export failed:\n{proc.stderr}")
    return time.perf_counter() - started


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dataset", type=Path, help="a packaged folder (default: build the AVA-shaped one)")
    args = ap.parse_args(argv)
    import datasets
    import webdataset as wds

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset is None:
            from load import build

            folder = build(Path(tmp))
        else:
            folder = args.dataset
        seconds = {w: export(folder, Path(tmp) / f"wds{w}", w) for w in (1, 4)}
        record = json.loads((Path(tmp) / "wds4" / "refava-export.json").read_text())
        shards = [str(Path(tmp) / "wds4" / e["path"]) for e in record["shards"]["splits"]["train"]]
        rows = sum(e["rows"] for e in record["shards"]["splits"]["train"])
        ds = datasets.load_dataset(str(folder), split="train", cache_dir=os.path.join(tmp, "cache"))
        ds = ds.cast_column("keyframe", datasets.Image(decode=False)).cast_column(
            "frames", datasets.Sequence(datasets.Image(decode=False)))

        def parquet() -> float:
            started, n, size = time.perf_counter(), 0, 0
            for row in ds:
                size += len(row["keyframe"]["bytes"]) + sum(len(f["bytes"]) for f in row["frames"])
                n += 1
            assert n == rows
            return n / (time.perf_counter() - started)

        def webdataset() -> float:
            started, n, size = time.perf_counter(), 0, 0
            for sample in wds.WebDataset(shards, shardshuffle=False):
                json.loads(sample["json"])
                size += sum(len(v) for k, v in sample.items() if k.endswith(".jpg"))
                n += 1
            assert n == rows
            return n / (time.perf_counter() - started)

        ratios = []
        for _ in range(args.repeats):
            base, ours = parquet(), webdataset()
            ratios.append(ours / base)
            print(f"parquet (datasets) {base:8.0f} rows/s   webdataset {ours:8.0f} rows/s   ratio {ours / base:.2f}")
    print(f"export: {rows} rows in {seconds[1]:.1f} s with 1 worker, {seconds[4]:.1f} s with 4 "
          f"({rows / seconds[4]:.0f} rows/s)")
    print(f"webdataset / parquet read throughput: {statistics.median(ratios):.2f}x (median of {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
