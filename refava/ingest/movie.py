"""One movie: its frame store (``frames/clean/<video_id>.parquet``), cut in one sequential decode, with its
completion record in the store's own metadata."""
from __future__ import annotations

import json
import os
import sys
import time as _time
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import MissingMediaError, VideoDecodeError
from ..framestore import CLEAN_DIR, hash_rows
from ..fsutil import atomic_path, sha256_json, write_json_atomic
from ..procs import fault_point
from ..records import GRID_FRAMES, KEYFRAME_GRID_INDEX, Clip, clip_id_of
from ..schemas import arrow_schema
from ..tables import PROVENANCE_KEY, read_provenance
from ..validate import Problem
from .encode import _BackgroundWriter, _cv2_threads, _make_encoder
from .settings import ClipSettings, grid_time

MOVIE_EXTENSIONS = (".mkv", ".mp4", ".webm", ".mov", ".avi")
GAP_S = 30
FRAMES_DIR = CLEAN_DIR
ROW_GROUP_CLIPS = 64
WINDOW_END = "window_end"      # a target role that stores no frame: the window's last grid frame must exist
FAILED_SUFFIX = ".failed.json"      # frames/clean/<video_id>.failed.json: a movie that could not be read


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
    from ..video import probe

    started = _time.perf_counter()
    workspace = Path(workspace)
    movie_path = Path(movie_path)
    result = MovieResult(video_id)
    rel = (FRAMES_DIR / f"{video_id}.parquet").as_posix()
    clips = sorted(clips)
    fingerprint = _fingerprint(movie_path, [t for t, _ in clips], settings)
    if reuse:
        done = completion_record(workspace, video_id, fingerprint)
        if done is not None:
            return MovieResult(video_id, done["movie"], done["clips"], done["problems"],
                               rel if done["clips"] is not None and done["movie"] else None, reused=True)
    try:
        info = probe(movie_path)
    except (VideoDecodeError, MissingMediaError) as exc:
        result.problems.append(Problem("unreadable_movie", movie_path.name, video_id, "a readable video file",
                                       str(exc)).to_dict())
        result.seconds = _time.perf_counter() - started
        # the outcome is recorded too (until the file changes), so shards and merges know this movie is done
        write_json_atomic(workspace / FRAMES_DIR / f"{video_id}{FAILED_SUFFIX}",
                          {"fingerprint": fingerprint, "result": result.to_meta()})
        return result
    result.movie = replace(info, video_id=video_id).to_row()
    cut = _MovieCut(video_id, movie_path, clips, settings, info, result, rel, fingerprint)
    cut.run(workspace / rel, threads=threads, skip_frames=skip_frames, jpeg_process=jpeg_process)
    result.frames_file = rel
    result.seconds = _time.perf_counter() - started
    (workspace / FRAMES_DIR / f"{video_id}{FAILED_SUFFIX}").unlink(missing_ok=True)
    return result


class _MovieCut:
    """The cutting of one movie's clips in one sequential decode: the targets (grid times) in time order, each
    given the decoded frame nearest to it; finished clips written a row group at a time."""

    def __init__(self, video_id: str, movie_path: Path, clips: list, settings: ClipSettings, info,
                 result: MovieResult, rel: str, fingerprint: str):
        self.video_id, self.movie_path, self.clips, self.settings = video_id, movie_path, clips, settings
        self.info, self.result, self.rel, self.fingerprint = info, result, rel, fingerprint
        self.frame_step = Fraction(1) / Fraction(info.fps).limit_denominator(1001) if info.fps else Fraction(1, 30)
        self.schema = arrow_schema("frames")
        self.targets, usable = self._plan_targets()
        self.target_times = sorted({t.time for t in self.targets})
        self.target_s = [float(t.time) for t in self.targets]
        self.need = {i: 2 + settings.frames for i in usable}      # keyframe, sampled frames, window end
        self.rows_by_clip: dict[int, list[dict]] = {i: [] for i in usable}
        self.completed: list[tuple[int, list[dict]]] = []   # finished clips whose JPEGs may still be encoding
        self.clip_rows: dict[int, dict] = {}
        self.clip_hashes: dict[str, str] = {}
        self.position = 0
        self.last = None
        self.encoder = None

    def problem(self, kind, where, id, expected, found) -> None:
        self.result.problems.append(Problem(kind, where, id, expected, found).to_dict())

    def _plan_targets(self) -> tuple[list[_Target], list[int]]:
        """Every grid time to fill, sorted; clips whose window starts before the movie are problems."""
        targets: list[_Target] = []
        usable: list[int] = []
        for index, (timestamp, _people) in enumerate(self.clips):
            start = grid_time(timestamp, 0)
            if start < -self.frame_step / 2:
                self.problem("keyframe_before_start", self.movie_path.name, clip_id_of(self.video_id, timestamp),
                             "a window [t - 1.5 s, t + 1.5 s) inside the movie", f"window start {float(start):.3f} s")
                continue
            usable.append(index)
            targets.append(_Target(grid_time(timestamp, KEYFRAME_GRID_INDEX), index, "keyframe", KEYFRAME_GRID_INDEX))
            for k in self.settings.grid_indices():
                targets.append(_Target(grid_time(timestamp, k), index, "sampled", k))
            # the whole window must be in the movie, whichever frames are stored: the clip set never depends on
            # --frames (a target that stores nothing, only checks that the window's last frame exists)
            targets.append(_Target(grid_time(timestamp, GRID_FRAMES - 1), index, WINDOW_END, GRID_FRAMES - 1))
        targets.sort()
        return targets, usable

    def emit(self, target: _Target, chosen) -> None:
        """``chosen`` is the frame of ``target``; a clip whose every target is filled is finished."""
        if target.role != WINDOW_END:
            self.rows_by_clip[target.clip_index].append({
                "clip_id": clip_id_of(self.video_id, self.clips[target.clip_index][0]), "role": target.role,
                "grid_index": target.grid_index, "target_s": float(target.time), "pts_s": float(chosen.time),
                "future": self.encoder.submit(chosen, target.role)})
        self.need[target.clip_index] -= 1
        if self.need[target.clip_index] == 0:
            rows = sorted(self.rows_by_clip.pop(target.clip_index),
                          key=lambda r: (r["role"] != "keyframe", r["grid_index"]))
            self.completed.append((target.clip_index, rows))

    def flush(self, writer, final: bool = False) -> None:
        """Write finished clips as one row group (every ROW_GROUP_CLIPS clips, so the bytes are reproducible)."""
        if not self.completed or (not final and len(self.completed) < ROW_GROUP_CLIPS):
            return
        table_rows = []
        # newest first: the JPEG helper process works through its queue oldest first (see jpeg_worker)
        for index, rows in reversed(self.completed):
            for row in reversed(rows):
                row["jpeg"], row["width"], row["height"] = row.pop("future").result()
        for index, rows in self.completed:
            table_rows.extend(rows)
            self.clip_hashes[rows[0]["clip_id"]] = hash_rows(rows)     # checked by package and `refava verify`
            timestamp, people = self.clips[index]
            key, first = rows[0], rows[1]
            self.clip_rows[index] = Clip(
                clip_id=key["clip_id"], video_id=self.video_id, timestamp=timestamp,
                window_start_s=float(grid_time(timestamp, 0)), window_end_s=float(grid_time(timestamp, GRID_FRAMES)),
                n_people=people, n_frames=self.settings.frames, frames_file=self.rel, keyframe_pts_s=key["pts_s"],
                keyframe_width=key["width"], keyframe_height=key["height"],
                frame_width=first["width"], frame_height=first["height"]).to_row()
        self.completed.clear()
        writer.write_table(pa.Table.from_pylist(table_rows, schema=self.schema))

    def run(self, out_path: Path, *, threads: int, skip_frames: bool, jpeg_process: bool | None) -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        self.encoder = _make_encoder(self.settings, self.info, jpeg_process, threads)
        # The decoding thread needs the GIL back after every frame; a short switch interval keeps the JPEG threads
        # from holding it for the default 5 ms each time (measured: decoding alone stalls badly otherwise).
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, 0.0005))
        # OpenCV's own worker threads (resizing frames encoded here) only compete with the decoder's threads
        cv2_threads = _cv2_threads(1)
        try:
            with atomic_path(out_path) as tmp:
                writer = _BackgroundWriter(pq.ParquetWriter(tmp, self.schema, compression="none",
                                                            write_statistics=["clip_id"]))
                try:
                    decode_error = self._decode(writer, threads=threads, skip_frames=skip_frames)
                    self._finish(writer, decode_error)
                finally:
                    writer.close()
        finally:
            self.encoder.close()
            sys.setswitchinterval(switch_interval)
            _cv2_threads(cv2_threads)

    def _decode(self, writer, *, threads: int, skip_frames: bool) -> str | None:
        """Decode the movie once, in order, filling targets; returns the decoder's error, if it stopped on one."""
        from ..video import open_for_decoding

        container, stream = open_for_decoding(self.movie_path, threads=threads)
        left_at = None          # the frame a reseek left from: a seek that lands no later made no progress
        may_reseek = True
        try:
            while self.position < len(self.targets):
                reseek, left_at, may_reseek = self._segment(container, stream, writer, left_at, may_reseek,
                                                            skip_frames)
                if not reseek:
                    break
        except VideoDecodeError as exc:
            return str(exc)
        finally:
            container.close()
        return None

    def _segment(self, container, stream, writer, left_at, may_reseek: bool, skip_frames: bool):
        """Decode from a seek to the next target on, until the targets are done or a gap of GAP_S asks for a new
        seek; returns (reseek, left_at, may_reseek)."""
        from ..video import decode_from

        targets = self.targets
        prev = None
        segment = decode_from(container, stream, targets[self.position].time, path=self.movie_path,
                              targets=self.target_times if skip_frames else None)
        for current in segment:
            if prev is None and left_at is not None and current.time <= left_at:
                # the seek landed on the same keyframe again (a truncated movie, or keyframes
                # further apart than GAP_S): decode on from here instead of seeking in a loop
                may_reseek = False
            self.last = current
            if self.position < len(targets) and targets[self.position].time <= current.time:
                may_reseek = True
            while self.position < len(targets) and targets[self.position].time <= current.time:
                target = targets[self.position]
                # nearest presentation time; a tie goes to the earlier frame
                if prev is not None and target.time - prev.time <= current.time - target.time:
                    self.emit(target, prev)
                else:
                    self.emit(target, current)
                self.position += 1
            self.flush(writer)
            if 2 * self.position >= len(targets):
                fault_point(f"ingest:{self.video_id}")       # tests kill a worker mid-movie here
            if self.position >= len(targets):
                break
            if may_reseek and self.target_s[self.position] - float(current.time) > GAP_S:   # float: only decides seeking
                return True, current.time, may_reseek
            prev = current
        return False, left_at, may_reseek

    def _finish(self, writer, decode_error: str | None) -> None:
        """The targets after the last decoded frame, the lost clips as problems, the completion record."""
        targets, last = self.targets, self.last
        # Targets after the last decoded frame: it is the nearest while it is still on screen.
        while self.position < len(targets) and last is not None and \
                targets[self.position].time - last.time <= self.frame_step / 2:
            self.emit(targets[self.position], last)
            self.position += 1
        self.flush(writer, final=True)
        lost = sorted({t.clip_index for t in targets[self.position:]})
        if lost:
            end_reached = float(last.time) if last is not None else 0.0
            if decode_error or end_reached + 2 * float(self.frame_step) < self.info.duration_s:
                self.problem("truncated_movie", self.movie_path.name, self.video_id,
                             f"frames up to {self.info.duration_s:.3f} s (header duration)",
                             decode_error or f"decoding ended at {end_reached:.3f} s; {len(lost)} clip(s) lost")
            for index in lost:
                timestamp = self.clips[index][0]
                self.problem("keyframe_past_end", self.movie_path.name, clip_id_of(self.video_id, timestamp),
                             f"frames up to {float(grid_time(timestamp, GRID_FRAMES - 1)):.3f} s",
                             f"last decoded frame at {end_reached:.3f} s")
        self.result.clips = [self.clip_rows[i] for i in sorted(self.clip_rows)]
        writer.add_key_value_metadata({PROVENANCE_KEY.decode(): json.dumps(
            {"table": "frames", "fingerprint": self.fingerprint, "result": self.result.to_meta(),
             "clip_sha256": dict(sorted(self.clip_hashes.items()))}, sort_keys=True)})
