"""``refava ingest``: AVA movies + annotation files -> movies, instances and clips tables, and per-movie frames.

A clip is the window [t - 1.5 s, t + 1.5 s) around AVA keyframe t (seconds of the full movie): a 90-frame grid
``t - 1.5 + k / 30`` (k = 0..89; the keyframe is k = 45).  Ingest stores the keyframe (full size unless
``keyframe_short_side``) and ``frames`` grid frames sampled uniformly (k = floor((i + 0.5) * 90 / frames)),
shrunk to ``short_side``, as JPEG.  For every target time the decoded frame whose presentation time is nearest
is chosen (ties go to the earlier frame).

Each movie is decoded once, sequentially, in timestamp order (one seek to the first window, and one more only
across a gap of more than ``GAP_S`` seconds); movies run in parallel processes.  A movie's frames are written
to ``frames/clean/<video_id>.parquet`` atomically, with the movie's results in the file's metadata, so a rerun
skips finished movies and assembles byte-identical tables.  Bad input is counted, reported and skipped.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time as _time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .ava import default_label_map, group_instances, load_ava_csv, load_excluded_timestamps, load_label_map
from .errors import MissingMediaError, StageError, StrictModeError, VideoDecodeError
from .framestore import hash_rows
from .procs import fault_point
from .fsutil import atomic_path, clean_stale_temporaries, sha256_file, sha256_json, write_json_atomic
from .records import (GRID_FPS, GRID_FRAMES, KEYFRAME_GRID_INDEX, Clip, Clips, Instance, Instances, Movie, Movies,
                      clip_id_of)
from .schemas import arrow_schema
from .tables import PROVENANCE_KEY, commit_together, read_provenance
from .progress import bar as _progress
from .validate import Problem, ProblemLog

if TYPE_CHECKING:
    from .engine import Engine, Shard

MOVIE_EXTENSIONS = (".mkv", ".mp4", ".webm", ".mov", ".avi")
GAP_S = 30
FRAMES_DIR = Path("frames") / "clean"
ROW_GROUP_CLIPS = 64
WINDOW_END = "window_end"      # a target role that stores no frame: the window's last grid frame must exist


@dataclass(frozen=True)
class ClipSettings:
    """How clips are cut: sampled frames per clip (90 = all), their short side, the keyframe's, JPEG quality."""

    frames: int = 8
    short_side: int = 256
    keyframe_short_side: int = 0
    jpeg_quality: int = 90

    def __post_init__(self):
        if not 1 <= self.frames <= GRID_FRAMES:
            raise ValueError(f"frames per clip: expected 1..{GRID_FRAMES} (or 'all'), found {self.frames}")
        if self.short_side < 0 or self.keyframe_short_side < 0:
            raise ValueError("short sides must be >= 0 (0 keeps the movie's size)")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality: expected 1..100, found {self.jpeg_quality}")

    def grid_indices(self) -> list[int]:
        """Grid indices of the sampled frames.

        >>> ClipSettings(frames=8).grid_indices()
        [5, 16, 28, 39, 50, 61, 73, 84]
        """
        return [int((i + 0.5) * GRID_FRAMES / self.frames) for i in range(self.frames)]


def grid_time(timestamp: int, grid_index: int) -> Fraction:
    """Movie time of grid frame ``grid_index`` of the clip around keyframe ``timestamp`` (exact).

    >>> grid_time(902, 45)
    Fraction(902, 1)
    """
    return Fraction(timestamp) - Fraction(3, 2) + Fraction(grid_index, GRID_FPS)


@dataclass(order=True)
class _Target:
    time: Fraction
    clip_index: int
    role: str
    grid_index: int


@dataclass
class MovieResult:
    """What ingest made of one movie: its row, its clips, its problems, and where its frames went."""

    video_id: str
    movie: dict | None = None
    clips: list[dict] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)
    frames_file: str | None = None
    reused: bool = False
    seconds: float = 0.0

    def to_meta(self) -> dict:
        return {"video_id": self.video_id, "movie": self.movie, "clips": self.clips, "problems": self.problems}


def movie_files(movies_dir: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    """({file name: [size, mtime_ns]} of the movie files in ``movies_dir``, {name: why it cannot be read}) for
    entries that look like movies but cannot be stat'ed (a symlink loop, a dangling link, no permission)."""
    movies, unreadable = {}, {}
    try:
        entries = sorted(movies_dir.iterdir()) if movies_dir.is_dir() else []
    except OSError as exc:
        return {}, {str(movies_dir): exc.strerror or str(exc)}
    for path in entries:
        if path.suffix in MOVIE_EXTENSIONS and not path.name.startswith("."):
            try:
                st = path.stat()
            except OSError as exc:
                unreadable[path.name] = exc.strerror or str(exc)
                continue
            movies[path.name] = [st.st_size, st.st_mtime_ns]
    return movies, unreadable


def _check_movies_dir(movies_dir: Path, jobs: list, by_movie: dict, workspace: Path) -> None:
    """Refuse a run that would find no movie at all (a wrong or empty movies_dir) instead of writing empty tables."""
    if jobs or not by_movie:
        return
    if not movies_dir.is_dir():
        found = "does not exist" if not movies_dir.exists() else "is not a folder"
    else:
        found = "holds none of the annotated movies"
    kept = " The tables already there are kept." if (workspace / "tables" / "instances.parquet").exists() else ""
    raise StageError(f"movies_dir {movies_dir} {found}: expected the movie files of {len(by_movie)} annotated "
                     f"movie(s) ({', '.join(sorted(by_movie)[:3])}{', ...' if len(by_movie) > 3 else ''}) named "
                     f"<video_id>{{{','.join(MOVIE_EXTENSIONS)}}}.{kept} Set [ava] movies_dir in refava.toml (or "
                     f"--movies-dir), or run `refava download`")


def find_movie(movies_dir: Path, video_id: str) -> Path | None:
    """The movie file of ``video_id`` in ``movies_dir`` (first of .mkv, .mp4, .webm, .mov, .avi), or None."""
    for ext in MOVIE_EXTENSIONS:
        candidate = movies_dir / f"{video_id}{ext}"
        try:
            candidate.stat()
        except OSError:
            continue
        return candidate
    return None


FAILED_SUFFIX = ".failed.json"      # frames/clean/<video_id>.failed.json: a movie that could not be read


def _well_formed(result) -> bool:
    """Whether a completion record's result has the shape ingest writes (else it is as good as none)."""
    return (isinstance(result, dict) and isinstance(result.get("problems"), list)
            and (result.get("clips") is None or isinstance(result.get("clips"), list)
                 and all(isinstance(r, dict) for r in result["clips"]))
            and (result.get("movie") is None or isinstance(result.get("movie"), dict)))


def completion_record(workspace: Path, video_id: str, fingerprint: str) -> dict | None:
    """The recorded outcome of a movie done with these inputs (``{"movie", "clips", "problems"}``), or None: the
    frames file's own metadata, or the failure record of a movie that could not be read."""
    previous = read_provenance(workspace / FRAMES_DIR / f"{video_id}.parquet")
    if previous and previous.get("fingerprint") == fingerprint and _well_formed(previous.get("result")):
        return previous["result"]
    failed = workspace / FRAMES_DIR / f"{video_id}{FAILED_SUFFIX}"
    if failed.exists():
        try:
            record = json.loads(failed.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(record, dict) and record.get("fingerprint") == fingerprint and _well_formed(record.get("result")):
            return record["result"]
    return None


def _fingerprint(movie_path: Path, timestamps: Sequence[int], settings: ClipSettings) -> str:
    st = movie_path.stat()
    return sha256_json({"file": movie_path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                        "timestamps": list(timestamps), "settings": asdict(settings), "format": 3})


class _Encoder:
    """Converts chosen frames into JPEG bytes on a small thread pool, overlapping with decoding.

    OpenCV and PyAV release the GIL while they convert and encode, so this runs beside the decoder.  One frame
    that serves several targets (overlapping windows) is encoded once per role.  At most ``max_pending`` jobs
    wait at a time, which bounds memory.
    """

    def __init__(self, settings: ClipSettings, workers: int = 2, max_pending: int = 64):
        from concurrent.futures import ThreadPoolExecutor

        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refava-jpeg")
        self._cache_time: Fraction | None = None
        self._cache: dict[str, object] = {}
        self._pending: list = []
        self._max_pending = max_pending

    def _job(self, frame, lock, role: str) -> tuple[bytes, int, int]:
        from .video import encode_frame_jpeg

        side = self.settings.keyframe_short_side if role == "keyframe" else self.settings.short_side
        return encode_frame_jpeg(frame, side or None, self.settings.jpeg_quality, lock=lock)

    def submit(self, decoded, role: str):
        """A future of (jpeg bytes, width, height) for ``decoded`` in ``role``."""
        import threading

        if decoded.time != self._cache_time:
            self._cache_time, self._cache = decoded.time, {"lock": threading.Lock()}
        future = self._cache.get(role)
        if future is None:
            if len(self._pending) >= self._max_pending:
                self._pending.pop(0).result()
            future = self._pool.submit(self._job, decoded.frame, self._cache["lock"], role)
            self._pending.append(future)
            self._cache[role] = future
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _BackgroundWriter:
    """A ParquetWriter whose row groups are written on a thread of their own (in order, one at a time), so
    decoding goes on while the bytes go to disk.  An error in a write is raised by the next call."""

    def __init__(self, writer: pq.ParquetWriter):
        from concurrent.futures import ThreadPoolExecutor

        self._writer = writer
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refava-parquet")
        self._pending = None

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def write_table(self, table: pa.Table) -> None:
        self._wait()     # at most one row group in flight: bounded memory
        self._pending = self._pool.submit(self._writer.write_table, table)

    def add_key_value_metadata(self, metadata: dict) -> None:
        self._wait()
        self._writer.add_key_value_metadata(metadata)

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


def _cv2_threads(n: int) -> int:
    """Set OpenCV's thread count; returns the previous one."""
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(n)
    return previous


def _make_encoder(settings: ClipSettings, info, jpeg_process: bool | None, threads: int):
    """The JPEG encoder for one movie: the idle-priority helper process (:mod:`refava.jpeg_worker`) when this
    movie's decoder has the machine to itself (``threads`` 0) and the platform allows it, else a thread pool.
    With several movies at once the decoders keep every core busy and the helper would only add copying
    (measured: 2 movies on 2 cores about 3 % slower with it).  ``jpeg_process`` True or False forces the choice."""
    from . import jpeg_worker

    if jpeg_process is None:
        jpeg_process = threads == 0 and jpeg_worker.available()
    if jpeg_process and info.width > 0 and info.height > 0:
        return jpeg_worker.ProcessEncoder(settings, info.width, info.height)
    return _Encoder(settings)


def ingest_movie(video_id: str, movie_path: str | os.PathLike, clips: Sequence[tuple[int, int]],
                 settings: ClipSettings, workspace: str | os.PathLike, *, threads: int = 0,
                 skip_frames: bool = True, jpeg_process: bool | None = None, reuse: bool = True) -> MovieResult:
    """Cut the clips of one movie; ``clips`` is [(keyframe second, people in the clip)], any order.

    Writes ``frames/clean/<video_id>.parquet`` under ``workspace`` atomically (complete clips only) and returns
    the movie row, the clip rows and the problems.  Reuses the existing file when nothing changed.
    ``skip_frames`` lets the decoder drop non-reference frames that cannot be nearest to any target time (the
    output is the same; only decoding work is saved).  ``jpeg_process`` forces (True) or forbids (False) the
    idle-priority JPEG helper process; by default it is used when ``threads`` is 0 (see ``_make_encoder``).
    ``reuse`` False redoes the movie; its old file stays until the new one replaces it.
    """
    from .video import decode_from, open_for_decoding, probe

    started = _time.perf_counter()
    workspace = Path(workspace)
    movie_path = Path(movie_path)
    result = MovieResult(video_id)
    rel = (FRAMES_DIR / f"{video_id}.parquet").as_posix()
    out_path = workspace / rel
    clips = sorted(clips)
    fingerprint = _fingerprint(movie_path, [t for t, _ in clips], settings)
    if reuse:
        done = completion_record(workspace, video_id, fingerprint)
        if done is not None:
            return MovieResult(video_id, done["movie"], done["clips"], done["problems"],
                               rel if done["clips"] is not None and done["movie"] else None, reused=True)

    def problem(kind, where, id, expected, found):
        result.problems.append(Problem(kind, where, id, expected, found).to_dict())

    try:
        info = probe(movie_path)
    except (VideoDecodeError, MissingMediaError) as exc:
        problem("unreadable_movie", movie_path.name, video_id, "a readable video file", str(exc))
        result.seconds = _time.perf_counter() - started
        # the outcome is recorded too (until the file changes), so shards and merges know this movie is done
        write_json_atomic(workspace / FRAMES_DIR / f"{video_id}{FAILED_SUFFIX}",
                          {"fingerprint": fingerprint, "result": result.to_meta()})
        return result
    result.movie = Movie(video_id=video_id, filename=movie_path.name, container=info.container, codec=info.codec,
                         width=info.width, height=info.height, fps=info.fps, duration_s=info.duration_s,
                         frame_count=info.frame_count, frame_count_source=info.frame_count_source,
                         start_s=info.start_s, size_bytes=info.size_bytes).to_row()
    frame_step = Fraction(1) / Fraction(info.fps).limit_denominator(1001) if info.fps else Fraction(1, 30)

    targets: list[_Target] = []
    usable: list[int] = []
    for index, (timestamp, _people) in enumerate(clips):
        start = grid_time(timestamp, 0)
        cid = clip_id_of(video_id, timestamp)
        if start < -frame_step / 2:
            problem("keyframe_before_start", movie_path.name, cid, "a window [t - 1.5 s, t + 1.5 s) inside the movie",
                    f"window start {float(start):.3f} s")
            continue
        usable.append(index)
        targets.append(_Target(grid_time(timestamp, KEYFRAME_GRID_INDEX), index, "keyframe", KEYFRAME_GRID_INDEX))
        for k in settings.grid_indices():
            targets.append(_Target(grid_time(timestamp, k), index, "sampled", k))
        # the whole window must be in the movie, whichever frames are stored: the clip set never depends on
        # --frames (a target that stores nothing, only checks that the window's last frame exists)
        targets.append(_Target(grid_time(timestamp, GRID_FRAMES - 1), index, WINDOW_END, GRID_FRAMES - 1))
    targets.sort()
    target_times = sorted({t.time for t in targets})
    target_s = [float(t.time) for t in targets]
    need = {i: 2 + settings.frames for i in usable}      # keyframe, sampled frames, window end
    rows_by_clip: dict[int, list[dict]] = {i: [] for i in usable}
    completed: list[tuple[int, list[dict]]] = []   # finished clips whose JPEGs may still be encoding
    clip_rows: dict[int, dict] = {}
    clip_hashes: dict[str, str] = {}
    schema = arrow_schema("frames")

    def emit(target: _Target, chosen) -> None:
        if target.role == WINDOW_END:
            need[target.clip_index] -= 1
            if need[target.clip_index] == 0:
                finish(target.clip_index)
            return
        rows_by_clip[target.clip_index].append({
            "clip_id": clip_id_of(video_id, clips[target.clip_index][0]), "role": target.role,
            "grid_index": target.grid_index, "target_s": float(target.time), "pts_s": float(chosen.time),
            "future": encoder.submit(chosen, target.role)})
        need[target.clip_index] -= 1
        if need[target.clip_index] == 0:
            finish(target.clip_index)

    def finish(clip_index: int) -> None:
        rows = sorted(rows_by_clip.pop(clip_index), key=lambda r: (r["role"] != "keyframe", r["grid_index"]))
        completed.append((clip_index, rows))

    def flush(writer, final: bool = False) -> None:
        """Write finished clips as one row group (every ROW_GROUP_CLIPS clips, so the bytes are reproducible)."""
        if not completed or (not final and len(completed) < ROW_GROUP_CLIPS):
            return
        table_rows = []
        # newest first: the JPEG helper process works through its queue oldest first (see jpeg_worker)
        for index, rows in reversed(completed):
            for row in reversed(rows):
                row["jpeg"], row["width"], row["height"] = row.pop("future").result()
        for index, rows in completed:
            table_rows.extend(rows)
            clip_hashes[rows[0]["clip_id"]] = hash_rows(rows)     # checked by package and `refava verify`
            timestamp, people = clips[index]
            key, first = rows[0], rows[1]
            clip_rows[index] = Clip(
                clip_id=key["clip_id"], video_id=video_id, timestamp=timestamp,
                window_start_s=float(grid_time(timestamp, 0)), window_end_s=float(grid_time(timestamp, GRID_FRAMES)),
                n_people=people, n_frames=settings.frames, frames_file=rel, keyframe_pts_s=key["pts_s"],
                keyframe_width=key["width"], keyframe_height=key["height"],
                frame_width=first["width"], frame_height=first["height"]).to_row()
        completed.clear()
        writer.write_table(pa.Table.from_pylist(table_rows, schema=schema))

    out_path.parent.mkdir(parents=True, exist_ok=True)
    encoder = _make_encoder(settings, info, jpeg_process, threads)
    # The decoding thread needs the GIL back after every frame; a short switch interval keeps the JPEG threads
    # from holding it for the default 5 ms each time (measured: decoding alone stalls badly otherwise).
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, 0.0005))
    # OpenCV's own worker threads (resizing frames encoded here) only compete with the decoder's threads
    cv2_threads = _cv2_threads(1)
    position = 0
    last = None
    left_at = None          # the frame a reseek left from: a seek that lands no later made no progress
    may_reseek = True
    decode_error: str | None = None
    try:
        with atomic_path(out_path) as tmp:
            writer = _BackgroundWriter(pq.ParquetWriter(tmp, schema, compression="none", write_statistics=["clip_id"]))
            try:
                container, stream = open_for_decoding(movie_path, threads=threads)
                try:
                    while position < len(targets):
                        prev = None
                        reseek = False
                        segment = decode_from(container, stream, targets[position].time, path=movie_path,
                                              targets=target_times if skip_frames else None)
                        for current in segment:
                            if prev is None and left_at is not None and current.time <= left_at:
                                # the seek landed on the same keyframe again (a truncated movie, or keyframes
                                # further apart than GAP_S): decode on from here instead of seeking in a loop
                                may_reseek = False
                            last = current
                            if position < len(targets) and targets[position].time <= current.time:
                                may_reseek = True
                            while position < len(targets) and targets[position].time <= current.time:
                                target = targets[position]
                                # nearest presentation time; a tie goes to the earlier frame
                                if prev is not None and target.time - prev.time <= current.time - target.time:
                                    emit(target, prev)
                                else:
                                    emit(target, current)
                                position += 1
                            flush(writer)
                            if 2 * position >= len(targets):
                                fault_point(f"ingest:{video_id}")       # tests kill a worker mid-movie here
                            if position >= len(targets):
                                break
                            if may_reseek and target_s[position] - float(current.time) > GAP_S:   # float: only decides seeking
                                reseek, left_at = True, current.time
                                break
                            prev = current
                        if not reseek:
                            break
                except VideoDecodeError as exc:
                    decode_error = str(exc)
                finally:
                    container.close()
                # Targets after the last decoded frame: it is the nearest while it is still on screen.
                while position < len(targets) and last is not None and targets[position].time - last.time <= frame_step / 2:
                    emit(targets[position], last)
                    position += 1
                flush(writer, final=True)
                lost = sorted({t.clip_index for t in targets[position:]})
                if lost:
                    end_reached = float(last.time) if last is not None else 0.0
                    if decode_error or end_reached + 2 * float(frame_step) < info.duration_s:
                        problem("truncated_movie", movie_path.name, video_id,
                                f"frames up to {info.duration_s:.3f} s (header duration)",
                                decode_error or f"decoding ended at {end_reached:.3f} s; {len(lost)} clip(s) lost")
                    for index in lost:
                        timestamp = clips[index][0]
                        problem("keyframe_past_end", movie_path.name, clip_id_of(video_id, timestamp),
                                f"frames up to {float(grid_time(timestamp, GRID_FRAMES - 1)):.3f} s",
                                f"last decoded frame at {end_reached:.3f} s")
                result.clips = [clip_rows[i] for i in sorted(clip_rows)]
                writer.add_key_value_metadata({PROVENANCE_KEY.decode(): json.dumps(
                    {"table": "frames", "fingerprint": fingerprint, "result": result.to_meta(),
                     "clip_sha256": dict(sorted(clip_hashes.items()))}, sort_keys=True)})
            finally:
                writer.close()
    finally:
        encoder.close()
        sys.setswitchinterval(switch_interval)
        _cv2_threads(cv2_threads)
    result.frames_file = rel
    result.seconds = _time.perf_counter() - started
    (workspace / FRAMES_DIR / f"{video_id}{FAILED_SUFFIX}").unlink(missing_ok=True)
    return result


@dataclass
class IngestResult:
    """Summary of an ingest run: tables written, counts, problems, and where everything went."""

    movies: Movies
    instances: Instances
    clips: Clips
    problems: ProblemLog
    excluded_rows: int
    excluded_keyframes: int
    reused_movies: int
    report_path: Path
    tables_dir: Path
    seconds: float
    skipped_instances: dict[str, int]

    def summary_lines(self) -> list[str]:
        lines = [
            f"ingest: {len(self.movies)} movies, {len(self.clips)} clips, {len(self.instances)} instances "
            f"in {self.seconds:.1f} s ({self.reused_movies} movies reused from an earlier run)",
            f"  excluded timestamps dropped: {self.excluded_rows} rows at {self.excluded_keyframes} keyframes",
        ]
        if self.skipped_instances:
            lines.append("  instances left out: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped_instances.items())))
        if self.problems:
            lines.append(f"  problems: {len(self.problems)} (each counted, skipped, and listed in the report)")
            lines.extend(self.problems.summary_lines())
        else:
            lines.append("  problems: none")
        lines.append(f"  tables:  {self.tables_dir}/{{movies,instances,clips}}.parquet")
        lines.append(f"  frames:  {self.tables_dir.parent / FRAMES_DIR}/<video_id>.parquet")
        lines.append(f"  report:  {self.report_path}")
        return lines


def load_annotations(annotation_files: Sequence[str | os.PathLike], *, label_map=None,
                     excluded_files: Sequence[str | os.PathLike] = (), problems: ProblemLog,
                     ) -> tuple[list[Instance], int, int]:
    """Read AVA csv files into instances (bad rows go to ``problems``; excluded keyframes dropped and counted)."""
    labels = load_label_map(label_map) if label_map else default_label_map()
    excluded: set[tuple[str, int]] = set()
    for path in excluded_files:
        excluded |= load_excluded_timestamps(path)
    counter: dict = {}
    instances: list[Instance] = []
    seen_ids: set[str] = set()
    for path in annotation_files:
        path = Path(path)
        rows = load_ava_csv(path, known_actions=labels.keys(), problems=problems)
        for inst in group_instances(rows, source=path.name, problems=problems,
                                    excluded=excluded, excluded_counter=counter):
            if inst.instance_id in seen_ids:
                problems.add(Problem("duplicate_row", path.name, inst.instance_id, "each instance in one file only",
                                     "the instance appears in an earlier annotation file"))
                continue
            seen_ids.add(inst.instance_id)
            instances.append(inst)
    return sorted(instances, key=lambda i: i.instance_id), counter.get("rows", 0), len(counter.get("keyframes", ()))


def ingest_provenance(movies_dir: str | os.PathLike, annotation_files, label_map, excluded_files,
                      settings: ClipSettings) -> dict:
    """What an ingest run depends on: its parameters, the hashes of its annotation files, and the movie files'
    names, sizes and modification times.  ``refava status`` compares it with the tables' stored provenance."""
    files = {}
    for path in [*annotation_files, *([label_map] if label_map else []), *excluded_files]:
        files[Path(path).name] = sha256_file(path)
    movies, _ = movie_files(Path(movies_dir))
    return {"stage": "ingest", "params": asdict(settings), "inputs": files, "movies": sha256_json(movies)}


def ingest(workspace: str | os.PathLike, movies_dir: str | os.PathLike, annotation_files: Sequence[str | os.PathLike],
           *, label_map: str | os.PathLike | None = None, excluded_files: Sequence[str | os.PathLike] = (),
           settings: ClipSettings = ClipSettings(), workers: int = 0, strict: bool = False, force: bool = False,
           progress: bool = True, log: Callable[[str], None] = print, allow_empty: bool = False,
           engine: Engine | None = None, shard: Shard | None = None, merge: bool = False):
    """Ingest AVA movies and annotations into ``workspace`` (tables/, frames/clean/, reports/ingest.json).

    Movies run under ``engine`` (default: a local pool of ``workers`` processes, 0 = one per CPU core; see
    :mod:`refava.engine`).  Finished movies are reused unless ``force``; bad input is counted and skipped, and
    ``strict`` turns any problem into :class:`StrictModeError` after the good part has been written.  Annotation
    files that yield no instance at all do not replace non-empty tables unless ``allow_empty`` (a truncated or wrong
    csv would otherwise wipe the build).  With ``shard`` only that shard's movies are done and no table is written
    (returns a :class:`ShardResult`); ``merge`` refuses to run unless every movie is already done, then commits.

    >>> result = ingest("ws", "ws/movies", ["ws/annotations/ava_sample.csv"])   # doctest: +SKIP
    >>> len(result.instances)
    180
    """
    from .engine import Engine, Task, run_tasks

    started = _time.perf_counter()
    workspace, movies_dir = Path(workspace), Path(movies_dir)
    engine = engine or Engine("local", workers)
    problems = ProblemLog()
    instances, excluded_rows, excluded_keyframes = load_annotations(
        annotation_files, label_map=label_map, excluded_files=excluded_files, problems=problems)

    if not instances and not allow_empty:
        _refuse_to_empty(workspace, annotation_files, problems)
    by_movie: dict[str, dict[int, int]] = {}
    for inst in instances:
        by_movie.setdefault(inst.video_id, {}).setdefault(inst.timestamp, 0)
        by_movie[inst.video_id][inst.timestamp] += 1

    jobs = []
    skipped: dict[str, int] = {}
    for video_id, clip_people in sorted(by_movie.items()):
        path = find_movie(movies_dir, video_id)
        if path is None:
            n = sum(clip_people.values())
            problems.add(Problem("missing_movie", str(movies_dir), video_id,
                                 f"a file {video_id}{{{','.join(MOVIE_EXTENSIONS)}}}",
                                 f"no such file ({len(clip_people)} clips, {n} instances need it)"))
            skipped["missing_movie"] = skipped.get("missing_movie", 0) + n
            continue
        jobs.append((video_id, path, sorted(clip_people.items())))
    _, unreadable = movie_files(movies_dir)
    for name, why in sorted(unreadable.items()):
        problems.add(Problem("unreadable_movie", str(movies_dir), name, "a readable movie file", why))
    _check_movies_dir(movies_dir, jobs, by_movie, workspace)
    if merge or shard is not None:
        # shards split the movies that have files, in sorted order; a merge needs every one of them done
        undone = [(n, vid) for n, (vid, path, cp) in enumerate(jobs)
                  if completion_record(workspace, vid, _fingerprint(path, [t for t, _ in cp], settings)) is None]
    if merge and undone:
        counts = {int(m[1]) for p in (workspace / "reports").glob("ingest-shard-*-of-*.json")
                  if (m := re.fullmatch(r"ingest-shard-\d+-of-(\d+)", p.stem))}
        count = counts.pop() if len(counts) == 1 else None
        shown = ", ".join(f"{vid} (shard {n % count}/{count})" if count else vid for n, vid in undone[:10])
        raise StageError(f"--merge: {len(undone)} of {len(jobs)} movie(s) are not done yet: {shown}"
                         f"{' ...' if len(undone) > 10 else ''}; run their shards (or a plain `refava ingest`, "
                         f"which does them here) and merge again")
    if merge:
        _check_records(workspace, jobs, settings)
    if shard is not None:
        jobs = shard.take(jobs)
    # --force deletes nothing: each movie's new frame file replaces the old one atomically when it is complete
    bar = _progress(total=len(jobs), enabled=progress, desc=f"ingest{f' shard {shard}' if shard else ''}",
                    unit="movie")
    tasks = [Task(vid, ingest_movie, (vid, path, cp, settings, workspace), {"reuse": not force}, label=f"movie {vid}")
             for vid, path, cp in jobs]
    try:
        results: dict[str, MovieResult] = run_tasks(
            tasks, engine, on_done=lambda task, result: bar.update(1),
            threads_hint=lambda n: {"threads": max(1, (os.cpu_count() or 1) // n) if n > 1 else 0})
    finally:
        bar.close()
    # a worker killed mid-movie (and retried elsewhere) leaves its temporary file: remove those of dead processes
    clean_stale_temporaries(workspace, ("frames",))
    if shard is not None:
        return _finish_shard(workspace, shard, results, undone, jobs, engine, started, log)

    movies, clips = [], []
    done_clips: set[str] = set()
    reused = 0
    for video_id in sorted(results):
        res = results[video_id]
        reused += res.reused
        problems.extend(Problem.from_dict(p) for p in res.problems)
        if res.movie:
            movies.append(Movie.from_row(res.movie))
        for row in res.clips:
            clips.append(Clip.from_row(row))
            done_clips.add(row["clip_id"])
    kept = [inst for inst in instances if inst.clip_id in done_clips]
    lost = len(instances) - len(kept) - skipped.get("missing_movie", 0)
    if lost:
        skipped["clip_not_cut"] = lost

    tables_dir = workspace / "tables"
    provenance = ingest_provenance(movies_dir, annotation_files, label_map, excluded_files, settings)
    result = IngestResult(Movies(movies), Instances(kept), Clips(clips), problems, excluded_rows, excluded_keyframes,
                          reused, workspace / "reports" / "ingest.json", tables_dir, 0.0, skipped)
    with commit_together(tables_dir, ["movies", "instances", "clips"]) as staged:   # the three agree, always
        result.movies.to_parquet(staged["movies"], provenance=provenance)
        result.instances.to_parquet(staged["instances"], provenance=provenance)
        result.clips.to_parquet(staged["clips"], provenance=provenance)
    result.seconds = _time.perf_counter() - started
    write_json_atomic(result.report_path, {
        "stage": "ingest", "settings": asdict(settings), "inputs": provenance["inputs"],
        "counts": {"movies": len(movies), "clips": len(clips), "instances": len(kept),
                   "instances_read": len(instances), "excluded_rows": excluded_rows,
                   "excluded_keyframes": excluded_keyframes, "movies_reused": reused},
        "skipped_instances": skipped, "problem_counts": problems.counts(), "problems": problems.to_list(),
    })
    for line in result.summary_lines():
        log(line)
    if strict and problems:
        raise StrictModeError(f"--strict: {len(problems)} problem(s) found ({problems.counts()}); the good part was "
                              f"written; see {result.report_path}")
    return result


@dataclass
class ShardResult:
    """What one shard of an ingest did; the tables are written by the merge."""

    shard: str
    movies: int
    reused: int
    problems: int
    report_path: Path
    remaining: int            # movies of the whole run (any shard) not done yet


def _finish_shard(workspace: Path, shard, results: dict, undone_before: list, jobs: list, engine, started: float,
                  log: Callable[[str], None]) -> ShardResult:
    mine = {vid for vid, _, _ in jobs}
    remaining = sum(1 for _, vid in undone_before if vid not in mine)
    reused = sum(r.reused for r in results.values())
    problems = [p for r in results.values() for p in r.problems]
    report = workspace / "reports" / f"ingest-shard-{shard.index}-of-{shard.count}.json"
    write_json_atomic(report, {"stage": "ingest", "shard": str(shard), "engine": engine.kind,
                               "movies": sorted(mine), "reused": reused, "problems": problems,
                               "remaining_in_other_shards": remaining,
                               "seconds": round(_time.perf_counter() - started, 3)})
    log(f"ingest shard {shard}: {len(results)} movies ({reused} reused from an earlier run), {len(problems)} "
        f"problem(s); report {report}")
    log(f"  {remaining} movie(s) of other shards not done yet" if remaining else
        "  every movie of every shard is done: `refava ingest --merge` (or a plain `refava ingest`) writes the tables")
    return ShardResult(str(shard), len(results), reused, len(problems), report, remaining)


def _check_records(workspace: Path, jobs: list, settings: ClipSettings) -> None:
    """A merge trusts no record it has not checked: every store against its checksums, and every clip row of its
    record against what the store holds (keyframe time and size, number and size of sampled frames)."""
    from .engine import check_stores, refuse_merge
    from .framestore import DamagedFrameStoreError, clip_layout

    stores, problems = {}, []
    for video_id, path, clip_people in jobs:
        record = completion_record(workspace, video_id, _fingerprint(path, [t for t, _ in clip_people], settings))
        store = workspace / FRAMES_DIR / f"{video_id}.parquet"
        if not record or not record.get("clips") or not store.exists():
            continue                                    # a failure record: the movie has no store
        stores[f"movie {video_id}"] = store
        try:
            layout = clip_layout(store)
        except DamagedFrameStoreError as exc:
            problems.append(f"movie {video_id}: {exc}")
            continue
        problems += [f"movie {video_id}: {line}" for line in _record_disagrees(record, layout)]
    refuse_merge(check_stores(stores) + problems, "a plain `refava ingest --force`")


def _record_disagrees(record: dict, layout: dict[str, dict]) -> list[str]:
    out = []
    rows = {row.get("clip_id"): row for row in record["clips"] if isinstance(row, dict)}
    if set(rows) != set(layout):
        out.append(f"the record lists clips {sorted(rows)[:3]}..., the store holds {sorted(layout)[:3]}...")
    for clip_id in sorted(set(rows) & set(layout)):
        row, held = rows[clip_id], layout[clip_id]
        said = (row.get("keyframe_pts_s"), row.get("keyframe_width"), row.get("keyframe_height"))
        if held["keyframe"] is None or tuple(held["keyframe"]) != said:
            out.append(f"clip {clip_id}: the record says keyframe (pts_s, width, height) {said}, the store holds "
                       f"{held['keyframe']}")
        if row.get("n_frames") != held["sampled"] or held["sampled_size"] - {(row.get("frame_width"),
                                                                             row.get("frame_height"))}:
            out.append(f"clip {clip_id}: the record says {row.get('n_frames')} sampled frames of "
                       f"{row.get('frame_width')}x{row.get('frame_height')}, the store holds {held['sampled']} of "
                       f"{sorted(held['sampled_size'])}")
    return out


def _refuse_to_empty(workspace: Path, annotation_files, problems: ProblemLog) -> None:
    table = workspace / "tables" / "instances.parquet"
    if not table.exists() or not len(Instances.from_parquet(table)):
        return
    why = f"; rows rejected: {problems.counts()}" if problems else ""
    raise StageError(f"{', '.join(str(a) for a in annotation_files)}: expected AVA rows, found no usable instance{why}; "
                     f"{table} holds instances and is kept. Fix the file, or pass --allow-empty to replace the "
                     f"tables with empty ones")
