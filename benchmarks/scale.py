"""Scale: the Ray engine against the local one, memory that does not grow with the work, and the whole of RefAVA
projected from measured per-movie costs.  Everything is measured in this run.

1. **Ray vs local** (target: Ray's throughput >= 0.9 x the local engine's): the same ``--movies`` 1-minute 1280x720
   H.264 movies ingested with ``--engine local`` (a process pool of one worker per CPU) and ``--engine ray`` (a local
   Ray cluster with as many CPUs, started before timing, as a cluster would be), alternating, ``--repeats`` times.
2. **Peak memory per ingest worker** (target: the 15-minute movie within 20 % of the 1-minute one): one movie
   ingested by one worker in a fresh process (its JPEG helper process counted too), for a 1-minute and a 15-minute
   720p movie (the 15-minute one is the 1-minute one remuxed 15 times: the same decoding work per minute); peak RSS
   and movie frames per second.
3. **Package peak memory** (target: 16x within 20 % of 1x): ``refava package`` in a fresh process on AVA-shaped
   workspaces (benchmarks/package.py's ``ava-like``: 12 clips per movie, 1-4 people per clip, 9 textured 340x256
   JPEGs per clip) of 4, 16 and 64 movies.
4. **Bookkeeping at RefAVA's size**: ``annotate check``, ``build-splits`` and ``stats`` on a synthetic workspace of 36,630 instances
   (300 movies), in seconds.
5. **Projection**: the time to ingest all of RefAVA (about 300 AVA movies of 15 minutes at 720p) on N cores, from
   the measured seconds per 15-minute movie per worker (one worker per core, as the engines run them).

    python benchmarks/scale.py [--movies 4] [--repeats 2] [--skip-long] [--skip-package]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

CACHE = Path(tempfile.gettempdir()) / "refava-bench"
REFAVA_MOVIES = 299          # AVA v2.2 train + val movies, the ones RefAVA's instances come from


def remux_repeated(src: Path, dst: Path, times: int) -> Path:
    """``src`` (H.264 in MP4, starting on a keyframe) played ``times`` times in a row, as one movie (packets copied)."""
    import av

    if dst.exists():
        return dst
    tmp = dst.with_suffix(".tmp.mp4")
    with av.open(str(src)) as probe_in:
        stream = probe_in.streams.video[0]
        duration = stream.duration or int(float(probe_in.duration) / 1e6 / stream.time_base)
    with av.open(str(tmp), "w") as out:
        with av.open(str(src)) as first:
            template = first.streams.video[0]
            ostream = out.add_stream_from_template(template)
        for k in range(times):
            with av.open(str(src)) as inp:
                for packet in inp.demux(inp.streams.video[0]):
                    if packet.dts is None:
                        continue
                    packet.pts += k * duration
                    packet.dts += k * duration
                    packet.stream = ostream
                    out.mux(packet)
    tmp.rename(dst)
    return dst


def movie_csv(video_ids: list[str], seconds: int, path: Path) -> Path:
    lines = []
    for vid in video_ids:
        for t in range(2, seconds - 1):
            lines.append(f"{vid},{t:04d},0.1,0.1,0.4,0.9,12,0\n{vid},{t:04d},0.5,0.1,0.8,0.9,14,1\n")
    path.write_text("".join(lines))
    return path


def ray_vs_local(movie: Path, count: int, repeats: int, root: Path) -> dict:
    import ray

    from refava.engine import Engine
    from refava.ingest import ingest
    from refava.video import probe

    movies = root / "movies"
    movies.mkdir(parents=True, exist_ok=True)
    ids = [f"bench{i:03d}movie" for i in range(count)]
    for vid in ids:
        link = movies / f"{vid}.mp4"
        if not link.exists():
            link.symlink_to(movie)
    seconds = int(probe(movie).duration_s)
    csv = movie_csv(ids, seconds, root / "gt.csv")
    cpus = os.cpu_count() or 1
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rates: dict[str, list[float]] = {"local": [], "ray": []}
    try:
        for r in range(repeats + 1):                          # the first round warms both (workers, page cache)
            for kind in ("local", "ray"):
                ws = root / f"ws-{kind}"
                shutil.rmtree(ws, ignore_errors=True)
                start = time.perf_counter()
                ingest(ws, movies, [csv], engine=Engine(kind, cpus), progress=False, log=lambda *_: None)
                elapsed = time.perf_counter() - start
                if r:
                    rates[kind].append(count / elapsed)
    finally:
        ray.shutdown()
    same = all((root / "ws-local" / "frames" / "clean" / f"{v}.parquet").read_bytes()
               == (root / "ws-ray" / "frames" / "clean" / f"{v}.parquet").read_bytes() for v in ids)
    local, on_ray = statistics.median(rates["local"]), statistics.median(rates["ray"])
    return {"local_movies_per_s": local, "ray_movies_per_s": on_ray, "ratio": on_ray / local, "same_bytes": same,
            "cpus": cpus, "movies": count}


PEAK = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from refava.ingest import ingest
    root, movie_dir, csv = map(Path, sys.argv[1:4])
    start = time.perf_counter()
    result = ingest(root, movie_dir, [csv], workers=1, progress=False, log=lambda *_: None)
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    helper = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_kb": own, "helper_peak_kb": helper, "clips": len(result.clips)}))
""")


def worker_peak(movie: Path, root: Path) -> dict:
    from refava.video import probe

    info = probe(movie)
    shutil.rmtree(root, ignore_errors=True)
    movies = root / "movies"
    movies.mkdir(parents=True)
    (movies / movie.name).symlink_to(movie)
    csv = movie_csv([movie.stem], int(info.duration_s), root / "gt.csv")
    proc = subprocess.run([sys.executable, "-c", PEAK, str(root / "ws"), str(movies), str(csv)], capture_output=True,
                          text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["fps"] = info.frame_count / out["seconds"]
    out["frames"] = info.frame_count
    out["minutes"] = info.duration_s / 60
    return out


PACKAGE_PEAK = textwrap.dedent("""
    import json, resource, sys
    from refava.package import package_workspace
    from refava.workspace import Workspace
    summary = package_workspace(Workspace.load(sys.argv[1]), progress=False, log=lambda *_: None)
    print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "instances": summary.instances, "bytes": summary.packaged_bytes}))
""")


def package_peak(movies: int, root: Path) -> dict:
    from package import build_ava_like

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    ws = build_ava_like(root, movies=movies)
    proc = subprocess.run([sys.executable, "-c", PACKAGE_PEAK, str(ws)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bookkeeping(root: Path) -> dict:
    """build-splits and stats on 36,630 synthetic instances in 300 movies (tables written directly)."""
    import numpy as np

    from refava.tables import write_table
    from refava.workspace import init_workspace

    rng = np.random.default_rng(0)
    shutil.rmtree(root, ignore_errors=True)
    ws = init_workspace(root / "ws")
    instances, status, clips, movies, annotations = [], [], [], [], []
    colours = ("grey", "red", "blue", "green", "white", "black")
    n, movie = 0, 0
    while n < 36_630:
        video = f"m{movie:03d}AbCdEfG"
        movies.append({"video_id": video, "filename": f"{video}.mkv", "container": "matroska", "codec": "h264",
                       "width": 1280, "height": 720, "fps": 25.0, "duration_s": 1800.0, "frame_count": 45000,
                       "frame_count_source": "header", "start_s": 0.0, "size_bytes": 1})
        for t in range(902, 1799, 18):
            people = int(rng.integers(1, 5))
            clip_id = f"{video}___{t:04d}"
            clips.append({"clip_id": clip_id, "video_id": video, "timestamp": t, "window_start_s": t - 1.5,
                          "window_end_s": t + 1.5, "n_people": people, "n_frames": 9,
                          "frames_file": f"frames/clean/{video}.parquet", "keyframe_pts_s": float(t),
                          "keyframe_width": 1280, "keyframe_height": 720, "frame_width": 455, "frame_height": 256})
            for p in range(people):
                iid = f"{clip_id}___{p}"
                x1, y1 = rng.uniform(0, 0.6, 2)
                acts = sorted({int(a) for a in rng.choice([11, 12, 14, 17, 79, 80, 74, 8, 59], 2)})
                instances.append({"instance_id": iid, "clip_id": clip_id, "video_id": video, "timestamp": t,
                                  "person_id": p, "box_xyxy": [x1, y1, x1 + 0.3, y1 + 0.35], "action_ids": acts,
                                  "source": "bench"})
                text = f"the {('tall', 'short', 'old', 'young')[p]} person in a {colours[n % 6]} coat number {n}"
                status.append({"instance_id": iid, "clip_id": clip_id, "video_id": video, "status": "accepted",
                               "reasons": [], "expression": text, "annotators": ["a1"], "verified": True})
                for stage, who in (("describe", "a1"), ("verify", "a2")):
                    annotations.append({
                        "annotation_id": f"{stage}-{iid}", "instance_id": iid, "clip_id": clip_id, "stage": stage,
                        "annotator": who, "created_at": "2026-01-01T00:00:00", "lead_time_s": 10.0,
                        "text": text, "flags": [], "picked": f"person_{p}" if stage == "verify" else None,
                        "picked_person_id": p if stage == "verify" else None, "ls_project_id": 1,
                        "ls_task_id": n, "ls_annotation_id": 2 * n + (stage == "verify"), "source": "bench",
                        "version": 1})
                n += 1
        movie += 1
    for name, rows in (("movies", movies), ("clips", clips), ("instances", instances),
                       ("annotation_status", status), ("annotations", annotations)):
        write_table(name, rows, ws.table(name))
    out = {"instances": len(instances), "movies": len(movies)}
    for args in (["annotate", "check"], ["build-splits"], ["stats"]):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=ws.root, capture_output=True, text=True)
        out[" ".join(args)] = time.perf_counter() - start
        if proc.returncode:
            out[" ".join(args) + "_error"] = proc.stderr.strip().splitlines()[-1][:200]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--movies", type=int, default=4, help="1-minute movies for the Ray/local comparison")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-long", action="store_true", help="leave out the 15-minute movie")
    ap.add_argument("--skip-package", action="store_true")
    args = ap.parse_args(argv)
    from ingest import make_movie

    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"generating the 1-minute 720p movie in {CACHE} (cached between runs) ...", flush=True)
    one = make_movie(CACHE / "film720p_1min.mp4", 1)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        r = ray_vs_local(one, args.movies, args.repeats, tmp / "engines")
        ok &= r["ratio"] >= 0.9 and r["same_bytes"]
        print(f"1. {r['movies']} x 1-minute 720p movies on {r['cpus']} CPUs: local {r['local_movies_per_s']:.3f} "
              f"movies/s, ray {r['ray_movies_per_s']:.3f} movies/s, ratio ray/local {r['ratio']:.2f} "
              f"(target >= 0.9); same bytes: {r['same_bytes']}", flush=True)
        peaks = [worker_peak(one, tmp / "peak1")]
        if not args.skip_long:
            print("   building the 15-minute movie (the 1-minute one remuxed 15 times) ...", flush=True)
            long = remux_repeated(one, CACHE / "film720p_15min_remux.mp4", 15)
            peaks.append(worker_peak(long, tmp / "peak15"))
        for p in peaks:
            print(f"2. one ingest worker, {p['minutes']:.0f}-minute 720p movie: peak RSS {p['peak_kb'] / 1024:.0f} MiB "
                  f"(JPEG helper {p['helper_peak_kb'] / 1024:.0f} MiB), {p['fps']:.0f} movie frames/s, "
                  f"{p['clips']} clips", flush=True)
        if len(peaks) == 2:
            growth = peaks[1]["peak_kb"] / peaks[0]["peak_kb"] - 1
            ok &= growth <= 0.2
            print(f"   growth 1 -> 15 minutes: {100 * growth:+.1f} % (target <= +20 %)")
        if not args.skip_package:
            results = []
            for scale, movies in ((1, 4), (4, 16), (16, 64)):
                results.append((scale, package_peak(movies, tmp / f"pkg{scale}")))
                s = results[-1][1]
                print(f"3. package {scale:>2}x ({movies} movies, {s['instances']} instances, "
                      f"{s['bytes'] / 1e6:.0f} MB): peak RSS {s['peak_kb'] / 1024:.0f} MiB", flush=True)
            growth = results[-1][1]["peak_kb"] / results[0][1]["peak_kb"] - 1
            ok &= growth <= 0.2
            print(f"   growth 1x -> 16x: {100 * growth:+.1f} % (target <= +20 %)")
        b = bookkeeping(tmp / "books")
        print(f"4. {b['instances']:,} instances in {b['movies']} movies: annotate check {b['annotate check']:.1f} s, "
              f"build-splits {b['build-splits']:.1f} s, stats {b['stats']:.1f} s"
              + "".join(f"; {k}: {v}" for k, v in b.items() if k.endswith("_error")))
        per_movie = peaks[-1]["seconds"] * (15 / peaks[-1]["minutes"])
        print(f"5. measured: {per_movie:.0f} s per 15-minute 720p movie per worker; all of RefAVA "
              f"({REFAVA_MOVIES} movies):")
        for cores in (2, 16, 64, 256):
            minutes = per_movie * -(-REFAVA_MOVIES // cores) / 60
            print(f"   {cores:>4} cores: {minutes:7.1f} min (the slowest worker's share of whole movies)")
        print("   (generated film-like H.264; real AVA movies decode slower: scale by benchmarks/ingest.py's "
              "frames/s on one of yours)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
