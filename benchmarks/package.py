"""``refava package`` throughput against pyarrow's raw Parquet write of the same bytes, and its size overhead.

Two workspaces, each packaged with ``package_workspace`` (default + annotations_only configurations, card, manifest,
checksums) and, in the same process, compared with ``pyarrow.parquet.write_table`` of a table holding the same
distinct JPEG bytes (one row per frame):

* ``ava-like`` (the target figures): AVA's shape written straight into workspace tables: 30 movies, 12 clips each,
  1 to 4 people per clip, 8 sampled frames plus the keyframe per clip, 340x256 JPEGs of textured content (about
  35 kB each, as real AVA frames at quality 90);
* ``sample --frames all`` (a stress case): the bundled sample corpus ingested with all 91 frames of every clip, so
  neighbouring clips share two thirds of their frames, and its frames are small cartoons (about 8 kB).

Printed per workspace: packaging MB/s divided by raw-write MB/s over the distinct JPEG bytes (target >= 0.5), and
the default configuration's size divided by its distinct JPEG bytes (target <= 1.1), with bytes per instance.

    python benchmarks/package.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def refava(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"refava {' '.join(args)} failed:\n{proc.stderr}")


def build_workspace(root: Path) -> Path:
    refava("sample-corpus", str(root / "sample"), cwd=root)
    refava("init", str(root / "ws"), "--from-sample", str(root / "sample"), cwd=root)
    ws = root / "ws"
    ann = root / "sample" / "annotations"
    for args in (["ingest", "--frames", "all"], ["annotate", "import", str(ann / "labelstudio_describe_export.json")],
                 ["annotate", "import", str(ann / "labelstudio_verify_export.json"), "--verify-map",
                  str(ann / "labelstudio_verify_tasks.json")], ["annotate", "check"],
                 ["build-splits"]):
        refava(*args, cwd=ws)
    return ws


def build_ava_like(root: Path, movies: int = 30, clips: int = 12, seed: int = 0) -> Path:
    """Workspace tables of AVA's shape, written directly (no video decoding): the packaging inputs only."""
    import numpy as np
    import simplejpeg

    from refava.framestore import hash_rows
    from refava.tables import write_table
    from refava.workspace import init_workspace

    rng = np.random.default_rng(seed)
    ws = init_workspace(root / "ava-like")
    (ws.root / "frames" / "clean").mkdir(parents=True)
    texture = rng.integers(0, 256, (512, 768, 3), dtype=np.uint8)
    texture = np.clip(np.cumsum(texture.astype(np.int32) - 127, axis=1) // 8 + 128, 0, 255).astype(np.uint8)
    instances, status, splits = [], [], []
    for m in range(movies):
        video = f"movie{m:03d}AbCd"
        frames = []
        for c in range(clips):
            t = 902 + 3 * c
            clip_id = f"{video}___{t:04d}"
            for k, grid in enumerate([45] + [round(i * 90 / 8 + 5) for i in range(8)]):
                y, x = rng.integers(0, 512 - 256), rng.integers(0, 768 - 340)
                image = np.ascontiguousarray(texture[y:y + 256, x:x + 340])
                frames.append({"clip_id": clip_id, "role": "keyframe" if k == 0 else "sampled", "grid_index": grid,
                               "target_s": t - 1.5 + grid / 30, "pts_s": t - 1.5 + grid / 30, "width": 340,
                               "height": 256, "jpeg": simplejpeg.encode_jpeg(image, quality=90)})
            for p in range(int(rng.integers(1, 5))):
                iid = f"{clip_id}___{p}"
                x1, y1 = rng.uniform(0, 0.6, 2)
                instances.append({"instance_id": iid, "clip_id": clip_id, "video_id": video, "timestamp": t,
                                  "person_id": p, "box_xyxy": [x1, y1, x1 + 0.3, y1 + 0.35],
                                  "action_ids": sorted({int(a) for a in rng.integers(1, 81, 3)}), "source": "bench"})
                status.append({"instance_id": iid, "clip_id": clip_id, "video_id": video, "status": "accepted",
                               "reasons": [], "expression": f"the person number {p} in a grey coat",
                               "annotators": ["a1"], "verified": True})
                splits.append({"instance_id": iid, "clip_id": clip_id, "video_id": video,
                               "split": ("train", "train", "val", "test")[m % 4]})
        by_clip: dict[str, list] = {}
        for row in frames:
            by_clip.setdefault(row["clip_id"], []).append(row)
        write_table("frames", frames, ws.root / "frames" / "clean" / f"{video}.parquet",   # checksums as ingest
                    provenance={"clip_sha256": {c: hash_rows(rows) for c, rows in sorted(by_clip.items())}})
    write_table("instances", instances, ws.table("instances"))
    write_table("annotation_status", status, ws.table("annotation_status"))
    write_table("splits", splits, ws.table("splits"))
    return ws.root


def unique_jpegs(ws: Path) -> list[bytes]:
    seen, out = set(), []
    for path in sorted((ws / "frames" / "clean").glob("*.parquet")):
        for data in pq.read_table(path, columns=["jpeg"]).column("jpeg").to_pylist():
            digest = hashlib.blake2b(data, digest_size=16).digest()
            if digest not in seen:
                seen.add(digest)
                out.append(data)
    return out


def measure(name: str, ws_root: Path, out: Path, repeats: int) -> bool:
    from refava.package import package_workspace
    from refava.workspace import Workspace

    ws = Workspace.load(ws_root)
    jpegs = unique_jpegs(ws.root)
    megabytes = sum(map(len, jpegs)) / 1e6
    raw = pa.table({"jpeg": pa.array(jpegs, pa.binary())})
    pkg_times, raw_times = [], []
    summary = None
    for _ in range(repeats):
        start = time.perf_counter()
        pq.write_table(raw, out.parent / "raw.parquet")
        raw_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        summary = package_workspace(ws, out, progress=False, log=lambda *_: None)
        pkg_times.append(time.perf_counter() - start)
    default = next(c for c in summary.configs if c.name == "default")
    size = sum(s.bytes for v in default.splits.values() for s in v)
    ratio = statistics.median(r / p for r, p in zip(raw_times, pkg_times))
    overhead = size / (default.unique_jpeg_bytes or 1)
    print(f"{name}: {len(jpegs)} distinct JPEGs, {megabytes:.1f} MB; {summary.instances} instances")
    print(f"  raw pyarrow write : {megabytes / statistics.median(raw_times):8.1f} MB/s")
    print(f"  refava package    : {megabytes / statistics.median(pkg_times):8.1f} MB/s")
    print(f"  throughput ratio  : {ratio:.2f}  (target >= 0.5)")
    print(f"  size / JPEG bytes : {overhead:.3f}  (target <= 1.1); {size / summary.instances / 1e3:.1f} kB per "
          f"instance vs {default.unique_jpeg_bytes / summary.instances / 1e3:.1f} kB of distinct JPEG")
    return ratio >= 0.5 and overhead <= 1.1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("building an AVA-shaped workspace ...", flush=True)
        ok = measure("ava-like", build_ava_like(root), root / "out1", args.repeats)
        print("building the sample workspace with every frame stored ...", flush=True)
        measure("sample --frames all (stress case, not a target)", build_workspace(root), root / "out2", args.repeats)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
