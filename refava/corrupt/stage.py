"""``refava corrupt``: corrupted copies of the clips of chosen splits, stored like the clean ones, with a manifest.

Layout: ``frames/corrupted/<configuration>/<video_id>.parquet`` (the frames table's schema; configuration names such
as ``fog_s3``), and ``tables/corruptions.parquet`` with one row per corrupted clip and setting.  Work is committed
one movie file at a time, each recording its setting, seed and the hashes of its clean clips in its metadata: a rerun
skips every movie file whose record still matches (a killed run resumes there), and redoes the rest.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import StageError
from ..framestore import CLEAN_DIR, CORRUPTED_DIR, DamagedFrameStoreError, clean_path, corrupted_path, read_store
from ..framestore import clip_order as _clip_order
from ..framestore import hash_rows, jpeg_problem, require_intact
from ..summary import Summary
from ..tables import read_provenance, read_table, write_table
from . import CorruptionSpec, clip_rng, corrupt_frames
from .codec import CODEC


@dataclass
class SettingSummary:
    configuration: str
    clips: int = 0
    frames: int = 0
    movies_done: int = 0
    movies_reused: int = 0
    folder: str = ""


@dataclass
class CorruptSummary:
    settings: list[SettingSummary] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)     # reason -> clips
    manifest: str = ""
    seconds: float = 0.0
    shard_report: str = ""
    encodes: str = ""                  # the kept reference encodes (codec types), "<folder> (N files, size)"

    def lines(self) -> list[str]:
        out = []
        for s in self.settings:
            out.append(f"  {s.configuration:<22} {s.clips:>5} clips, {s.frames:>6} frames; movies: {s.movies_done} "
                       f"corrupted, {s.movies_reused} already done -> {s.folder}")
        frames = sum(s.frames for s in self.settings)
        if frames and self.seconds > 0:
            out.append(f"  {frames} frames corrupted in {self.seconds:.1f} s ({frames / self.seconds:.0f} frames/s)")
        for reason, n in sorted(self.skipped.items()):
            out.append(f"  skipped {n} clip(s): {reason}")
        if self.encodes:
            out.append(f"  clips' reference H.264 encodes kept for the other codec settings: {self.encodes} (may be "
                       f"deleted; they are encoded again)")
        return out


def selected_clips(ws, splits: Sequence[str]) -> dict[str, dict[str, str]]:
    """video_id -> {clip_id: split} for the clips of ``splits`` (``all`` for every split) in tables/splits."""
    if not ws.table("splits").exists():
        raise StageError(f"{ws.table('splits')} not found: run `refava build-splits` first (corrupt works on splits)")
    rows = read_table("splits", ws.table("splits"), columns=["clip_id", "video_id", "split"]).to_pylist()
    known = sorted({r["split"] for r in rows})
    wanted = set(known) if "all" in splits else set(splits)
    unknown = wanted - set(known)
    if unknown:
        raise StageError(f"--split {', '.join(sorted(unknown))}: not in {ws.table('splits')}; its splits are "
                         f"{', '.join(known)} (or use --split all)")
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows:
        if r["split"] in wanted:
            out[r["video_id"]][r["clip_id"]] = r["split"]
    return dict(sorted(out.items()))


def _decode(data: bytes) -> np.ndarray:
    import simplejpeg

    return simplejpeg.decode_jpeg(data, colorspace="RGB")


# JPEG changes noise: at quality 90 a stored Gaussian noise frame measured sigma 0.087 for the formula's 0.08 (its
# quantisation error adds to the noise at low severities and clips it at high ones).  Noise types are stored at
# quality 98 without chroma subsampling: within 1 % of the unstored sigma at every severity, for about twice the
# bytes (benchmarks/noise_storage.py prints both); the other types keep the clean frames' quality.
ENCODES_DIR = Path("cache") / "h264"       # the codec types' shared reference encodes (codec.Encodes)
NOISE_STORAGE = {"format": "jpeg", "quality": 98, "subsampling": "444"}


def storage_for(spec: CorruptionSpec, clean_quality: int) -> dict:
    """How a corruption's frames are stored: JPEG quality and chroma subsampling (recorded in the manifest)."""
    if spec.type in ("gaussian_noise", "shot_noise"):
        return dict(NOISE_STORAGE)
    return {"format": "jpeg", "quality": clean_quality, "subsampling": "444"}      # simplejpeg's default


def encode_stored(image: np.ndarray, storage: dict) -> bytes:
    """One corrupted frame as it is stored (see :func:`storage_for`)."""
    import simplejpeg

    return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=storage["quality"], colorspace="RGB",
                                  colorsubsampling=storage["subsampling"])


def corrupt_movie(clean_path: Path, out_path: Path, clips: dict[str, str], spec: CorruptionSpec, seed: int,
                  quality: int, *, pool=None, force: bool = False, only_check: bool = False,
                  encodes=None) -> tuple[list[dict], dict[str, int]] | None:
    """Corrupt the ``clips`` of one movie's clean frames file into ``out_path``; return manifest rows and skips.
    With ``only_check`` nothing is written: None when the movie still has work to do.  ``encodes``: the codec
    types' shared encodes (:class:`codec.Encodes`)."""
    table = read_store(clean_path)
    by_clip: dict[str, list[dict]] = defaultdict(list)
    for row in table.to_pylist():
        if row["clip_id"] in clips:
            by_clip[row["clip_id"]].append(row)
    skipped = {}
    missing = [c for c in clips if c not in by_clip]
    if missing:
        skipped["no clean frames (ingest reported them)"] = len(missing)
    sources = {c: hash_rows(rows) for c, rows in sorted(by_clip.items())}
    require_intact(clean_path, sources)
    record = {"stage": "corrupt", "configuration": spec.name, "type": spec.type, "severity": spec.severity,
              "preset": spec.preset, "style": spec.style, "params": spec.params, "seed": seed,
              "jpeg_quality": quality, "storage": storage_for(spec, quality), "sources": sources,
              "frames": {c: len(by_clip[c]) for c in sources}, "splits": {c: clips[c] for c in sources}}
    stored = read_provenance(out_path)
    if not force and stored is not None and all(stored.get(k) == v for k, v in record.items()) and "outputs" in stored:
        return _manifest_rows(stored, out_path), skipped | {"__reused__": 1}
    if only_check:
        return None
    out_rows, outputs = [], {}
    mapper = pool.map if pool is not None else map

    def one_clip(clip_id: str, mapper=mapper) -> list[dict]:
        rows = sorted(by_clip[clip_id], key=_clip_order)
        try:
            images = list(mapper(_decode, [r["jpeg"] for r in rows]))
        except (ValueError, RuntimeError) as exc:
            bad = next((r for r in rows if jpeg_problem(r["jpeg"])), rows[0])
            raise DamagedFrameStoreError(
                f"{clean_path} (movie {clean_path.stem}) clip {clip_id}: the {bad['role']} frame at grid index "
                f"{bad['grid_index']} is not a decodable JPEG ({exc}); delete {clean_path.name} and rerun "
                f"`refava ingest`, then corrupt again (finished movies are kept)") from None
        corrupted = corrupt_frames(images, spec, clip_rng(seed, clip_id, spec.name), encodes=encodes)
        jpegs = list(mapper(lambda im: encode_stored(im, record["storage"]), corrupted))
        return [{**r, "jpeg": j} for r, j in zip(rows, jpegs)]

    if spec.type in CODEC:
        # the encoder runs one thread per clip (for the same bytes), so clips run side by side instead, each on
        # one thread of the pool (x264 releases the GIL); every clip has its own generator: the same bytes
        done = mapper(lambda clip_id: one_clip(clip_id, map), list(sources))
    else:
        done = map(one_clip, list(sources))
    for clip_id, new_rows in zip(sources, done):
        outputs[clip_id] = hash_rows(new_rows)
        out_rows.extend(new_rows)
    record["outputs"] = outputs
    write_table("frames", out_rows, out_path, provenance=record, validate=False)
    return _manifest_rows(record, out_path), skipped


def _manifest_rows(record: dict, path: Path) -> list[dict]:
    video_id = path.stem
    return [{"configuration": record["configuration"], "type": record["type"], "severity": record["severity"],
             "preset": record["preset"], "style": record["style"], "seed": record["seed"],
             "params": json.dumps({**record["params"], "storage": record.get("storage")}, sort_keys=True),
             "clip_id": clip_id, "video_id": video_id,
             "split": record["splits"][clip_id], "frames": record["frames"][clip_id],
             "source_sha256": record["sources"][clip_id], "output_sha256": record["outputs"][clip_id],
             "path": f"{CORRUPTED_DIR.as_posix()}/{record['configuration']}/{path.name}"}
            for clip_id in record["outputs"]]


def _corrupt_task(clean: Path, out: Path, clips: dict[str, str], spec: CorruptionSpec, seed: int, quality: int,
                  force: bool, encodes_root: Path):
    """One movie under one setting, as an engine task (in any process): JPEG work on two threads; the codec types
    share each clip's reference encode with the other settings through ``encodes_root`` (the workspace's
    ``cache/h264/``)."""
    from concurrent.futures import ThreadPoolExecutor

    encodes = _encodes(encodes_root) if spec.type in CODEC else None
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="refava-jpeg") as pool:
        return corrupt_movie(clean, out, clips, spec, seed, quality, pool=pool, force=force, encodes=encodes)


_ENCODES: dict[Path, object] = {}


def _encodes(root: Path):
    """One :class:`codec.Encodes` per cache folder and process (its folder serves every process)."""
    from .codec import Encodes

    if root not in _ENCODES:
        _ENCODES[root] = Encodes(root)
    return _ENCODES[root]


def corrupt_workspace(ws, specs: Sequence[CorruptionSpec], splits: Sequence[str] = ("test",), *,
                      seed: int | None = None, force: bool = False, log: Callable[[str], None] = print,
                      progress: bool = True, engine=None, shard=None, merge: bool = False) -> CorruptSummary:
    """Corrupt the clips of ``splits`` with every setting in ``specs``; write frames, manifest and report.

    Each (setting, movie) is a task for ``engine`` (default: in this process; see :mod:`refava.engine`).  With
    ``shard`` only that shard's tasks run and neither manifest nor report is written; ``merge`` refuses unless every
    task is done, then writes them."""
    from ..engine import Engine, Task, run_tasks
    from ..fsutil import clean_stale_temporaries, write_json_atomic
    from ..progress import bar as _progress

    engine = engine or Engine("local", 1)
    seed = int(ws.config["seeds"]["corrupt"] if seed is None else seed)
    quality = int(ws.config["clips"]["jpeg_quality"])
    chosen = selected_clips(ws, splits)
    summary = CorruptSummary()
    total_clips = sum(len(c) for c in chosen.values())
    if not total_clips:
        raise StageError(f"no clips in split(s) {', '.join(splits)} of {ws.table('splits')}: nothing to corrupt")
    skipped: dict[str, int] = defaultdict(int)
    tasks = []
    for spec in specs:
        for video_id, clips in chosen.items():
            clean = clean_path(ws.root, video_id)
            if not clean.exists():
                skipped[f"movie has no clean frames file ({CLEAN_DIR}/<video>.parquet)"] += len(clips)
                continue
            out = corrupted_path(ws.root, spec.name, video_id)
            tasks.append(Task((spec.name, video_id), _corrupt_task, (clean, out, clips, spec, seed, quality, force,
                                                                      ws.root / ENCODES_DIR),
                              label=f"{spec.name} movie {video_id}"))
    start = time.perf_counter()
    if merge:
        # every task must be done already: what the check reads (each movie's record) is the result
        results = {t.key: corrupt_movie(*t.args[:6], only_check=True) for t in tasks}
        from ..engine import check_stores, refuse_merge, refuse_undone

        refuse_undone(ws.reports_dir, "corrupt", [(n, t.label) for n, t in enumerate(tasks) if results[t.key] is None],
                      len(tasks), "(setting, movie) task(s)")

        refuse_merge(check_stores({t.label: t.args[1] for t in tasks}), "a plain `refava corrupt --force`")
    else:
        if shard is not None:
            tasks = shard.take(tasks)
        bar = _progress(total=sum(len(t.args[2]) for t in tasks), enabled=progress,
                        desc=f"corrupt{f' shard {shard}' if shard else ''}", unit="clip")
        try:
            results = run_tasks(tasks, engine, on_done=lambda task, _: bar.update(len(task.args[2])))
        finally:
            bar.close()
    clean_stale_temporaries(ws.root, ("frames", "cache"))     # those of workers killed mid-movie (and retried)
    per_setting = {spec.name: SettingSummary(spec.name, folder=str(ws.root / CORRUPTED_DIR / spec.name))
                   for spec in specs}
    for (name, _video), (rows, skips) in sorted(results.items()):
        s = per_setting[name]
        reused = skips.pop("__reused__", 0)
        for reason, n in skips.items():
            skipped[reason] += n
        s.movies_reused += reused
        s.movies_done += 1 - reused
        s.clips += len(rows)
        if not reused:
            s.frames += sum(r["frames"] for r in rows)
    summary.seconds = time.perf_counter() - start
    summary.settings = list(per_setting.values())
    summary.skipped = dict(skipped)
    if any(spec.type in CODEC for spec in specs) and (ws.root / ENCODES_DIR).is_dir():
        kept = list((ws.root / ENCODES_DIR).rglob("*.h264"))
        size = sum(p.stat().st_size for p in kept) / 1e6
        summary.encodes = f"{ws.root / ENCODES_DIR} ({len(kept)} files, {size:.1f} MB)"
    if shard is not None:
        from ..engine import write_shard_report

        report = write_shard_report(ws.reports_dir, "corrupt", shard, {
            "shard": str(shard), "tasks": [list(k) for k in sorted(results)],
            "settings": [vars(s) for s in summary.settings], "skipped": summary.skipped})
        summary.manifest = ""
        summary.shard_report = str(report)
        return summary
    summary.manifest = str(write_manifest(ws))
    write_json_atomic(ws.reports_dir / "corrupt.json", {
        "seed": seed, "splits": list(splits), "settings": [vars(s) for s in summary.settings],
        "skipped": summary.skipped, "manifest": summary.manifest})
    return summary


def write_manifest(ws) -> Path:
    """Rebuild tables/corruptions.parquet from the records of every file under frames/corrupted/."""
    rows = []
    root = ws.root / CORRUPTED_DIR
    for path in sorted(root.glob("*/*.parquet")) if root.exists() else []:
        record = read_provenance(path)
        if record and record.get("stage") == "corrupt" and "outputs" in record:
            rows.extend(_manifest_rows(record, path))
    rows.sort(key=lambda r: (r["configuration"], r["video_id"], r["clip_id"]))
    from ..fsutil import sha256_file

    inputs = {"splits": sha256_file(ws.table("splits"))} if ws.table("splits").exists() else {}
    return write_table("corruptions", rows, ws.table("corruptions"), provenance={
        "stage": "corrupt", "configurations": sorted({r["configuration"] for r in rows}), "inputs": inputs})


def run(ws, *, types, severities=(), preset: str | None = None, splits=("test",), style: str | None = None,
        seed: int | None = None, force: bool = False, progress: bool = True, engine=None, shard=None,
        merge: bool = False, log: Callable[[str], None] = print) -> Summary:
    """``refava corrupt``: every (type, severity) setting over the clips of ``splits`` (see
    :func:`corrupt_workspace`); ``preset`` fixes the severities."""
    from ..errors import ConfigError
    from . import resolve

    seed = int(ws.config["seeds"]["corrupt"] if seed is None else seed)
    if preset and severities:
        raise ConfigError("--preset and --severity exclude each other: the preset fixes the severities")
    levels = [None] if preset else (sorted(set(severities)) or [3])
    specs = [resolve(kind, level, preset=preset, style=style) for kind in types for level in levels]
    summary = corrupt_workspace(ws, specs, splits, seed=seed, force=force, log=log, progress=progress, engine=engine,
                                shard=shard, merge=merge)
    lines = [f"corrupted split(s) {', '.join(splits)} with seed {seed}{f' (shard {shard})' if shard else ''}:",
             *summary.lines()]
    if shard:
        lines.append("when every shard is done: `refava corrupt ... --merge` (the same settings) writes the manifest")
        return Summary("corrupt", lines, {"shard report": Path(summary.shard_report)})
    return Summary("corrupt", lines, {"manifest": Path(summary.manifest), "report": ws.reports_dir / "corrupt.json"})
