"""The ingest stage: annotation files -> instances, movies through the engine, the three tables committed
together, the report; shards and their merge."""
from __future__ import annotations

import json
import os
import time as _time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..ava import default_label_map, group_instances, load_ava_csv, load_excluded_timestamps, load_label_map
from ..errors import StageError, StrictModeError
from ..fsutil import clean_stale_temporaries, sha256_file, sha256_json, write_json_atomic
from ..progress import bar as _progress
from ..records import Clip, Clips, Instance, Instances, Movie, Movies
from ..tables import commit_together, read_provenance
from ..summary import StageState, Summary
from ..validate import Problem, ProblemLog
from .movie import (FRAMES_DIR, MOVIE_EXTENSIONS, MovieResult, _fingerprint, completion_record, find_movie,
                    ingest_movie, movie_files)
from .settings import ClipSettings

if TYPE_CHECKING:
    from ..engine import Engine, Shard


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
    from ..engine import Engine, Task, refuse_undone, run_tasks

    started = _time.perf_counter()
    workspace, movies_dir = Path(workspace), Path(movies_dir)
    engine = engine or Engine("local", workers)
    problems = ProblemLog()
    instances, excluded_rows, excluded_keyframes = load_annotations(
        annotation_files, label_map=label_map, excluded_files=excluded_files, problems=problems)

    if not instances and not allow_empty:
        _refuse_to_empty(workspace, annotation_files, problems)
    skipped: dict[str, int] = {}
    by_movie, jobs = _plan_movies(instances, movies_dir, problems, skipped)
    _, unreadable = movie_files(movies_dir)
    for name, why in sorted(unreadable.items()):
        problems.add(Problem("unreadable_movie", str(movies_dir), name, "a readable movie file", why))
    _check_movies_dir(movies_dir, jobs, by_movie, workspace)
    if merge or shard is not None:
        # shards split the movies that have files, in sorted order; a merge needs every one of them done
        undone = [(n, vid) for n, (vid, path, cp) in enumerate(jobs)
                  if completion_record(workspace, vid, _fingerprint(path, [t for t, _ in cp], settings)) is None]
    if merge:
        refuse_undone(workspace / "reports", "ingest", undone, len(jobs), "movie(s)")
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
    from ..engine import write_shard_report

    mine = {vid for vid, _, _ in jobs}
    remaining = sum(1 for _, vid in undone_before if vid not in mine)
    reused = sum(r.reused for r in results.values())
    problems = [p for r in results.values() for p in r.problems]
    report = write_shard_report(workspace / "reports", "ingest", shard, {
        "stage": "ingest", "shard": str(shard), "engine": engine.kind, "movies": sorted(mine), "reused": reused,
        "problems": problems, "remaining_in_other_shards": remaining,
        "seconds": round(_time.perf_counter() - started, 3)})
    log(f"ingest shard {shard}: {len(results)} movies ({reused} reused from an earlier run), {len(problems)} "
        f"problem(s); report {report}")
    log(f"  {remaining} movie(s) of other shards not done yet" if remaining else
        "  every movie of every shard is done: `refava ingest --merge` (or a plain `refava ingest`) writes the tables")
    return ShardResult(str(shard), len(results), reused, len(problems), report, remaining)


def _plan_movies(instances, movies_dir: Path, problems: ProblemLog, skipped: dict[str, int]):
    """({video: {keyframe second: people}}, [(video, movie file, [(second, people)])] of the movies found); each
    missing movie is a problem and its instances are counted in ``skipped``."""
    by_movie: dict[str, dict[int, int]] = {}
    for inst in instances:
        by_movie.setdefault(inst.video_id, {}).setdefault(inst.timestamp, 0)
        by_movie[inst.video_id][inst.timestamp] += 1
    jobs = []
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
    return by_movie, jobs


def _check_records(workspace: Path, jobs: list, settings: ClipSettings) -> None:
    """A merge trusts no record it has not checked: every store against its checksums, and every clip row of its
    record against what the store holds (keyframe time and size, number and size of sampled frames)."""
    from ..engine import check_stores, refuse_merge
    from ..framestore import DamagedFrameStoreError, clip_layout

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


# --- the stage's state and run ----------------------------------------------------------------------------

def ingest_inputs(ws, settings=None) -> dict:
    """What an ingest of ``ws`` with ``settings`` (default: refava.toml's) depends on (see ingest_provenance)."""
    settings = settings or clip_settings(ws)
    return ingest_provenance(ws.path(ws.config["ava"]["movies_dir"]), ws.paths("ava", "annotations"),
                             ws.optional_path("ava", "label_map"), ws.paths("ava", "excluded"), settings)


def clip_settings(ws) -> ClipSettings:
    """The clip settings refava.toml gives."""
    return ClipSettings(**ws.config["clips"])


def _compare(stored: dict | None, expected: dict, outputs: list[str]) -> tuple[str, str]:
    if stored is None:
        return "missing", f"no {', '.join(outputs)} yet"
    changed = [k for k in expected if stored.get(k) != expected[k]]
    if changed:
        return "stale", "changed since the last run: " + ", ".join(changed)
    return "done", f"up to date ({', '.join(outputs)})"


def ingest_report_problems(ws) -> tuple[dict, dict]:
    """(counts, problem counts) of the last ingest's report ({} when there is none)."""
    try:
        report = json.loads((ws.reports_dir / "ingest.json").read_text())
    except (OSError, ValueError):
        return {}, {}
    return report.get("counts") or {}, report.get("problem_counts") or {}


def state(ws) -> StageState:
    """The ingest's state for `refava status` (its declaration in refava.stages points here)."""
    outputs = ["movies", "instances", "clips"]
    stored = [read_provenance(ws.table(name)) for name in outputs]
    stored = [None if s is None else {k: v for k, v in s.items() if k != "table"} for s in stored]
    if all(s is None for s in stored):
        shards = sorted(ws.reports_dir.glob("ingest-shard-*-of-*.json"))
        if shards:                                  # a job array under way: the merge writes the tables
            return StageState("ingest", "partial", f"{len(shards)} shard report(s) ({shards[0].name}, ...) and no "
                                                   f"tables yet: run the remaining shards, then `refava ingest "
                                                   f"--merge` (it names any movie not done)")
        return StageState("ingest", "missing", "run `refava ingest`")
    if any(s is None for s in stored) or any(s != stored[0] for s in stored):
        return StageState("ingest", "partial", "the movies, instances and clips tables are not from one run: "
                                               "run `refava ingest --force`")
    try:
        expected = ingest_inputs(ws)
    except OSError as exc:
        return StageState("ingest", "stale", f"an input cannot be read: {exc}")
    relevant = {k: v for k, v in stored[0].items() if k in expected}
    state, detail = _compare(relevant, expected, [f"tables/{n}.parquet" for n in outputs])
    if state != "done":
        return StageState("ingest", state, detail)
    from ..tables import read_table

    files = set(read_table("clips", ws.table("clips"), columns=["frames_file"]).column("frames_file").to_pylist())
    gone = sorted(f for f in files if not (ws.root / f).exists())
    if gone:
        return StageState("ingest", "partial", f"{len(gone)} frame store(s) missing ({', '.join(gone[:3])}"
                                               f"{', ...' if len(gone) > 3 else ''}): run `refava ingest`")
    counts, problems = ingest_report_problems(ws)
    said = ", ".join(f"{k} {v}" for k, v in sorted(problems.items()))
    if not counts.get("clips"):
        return StageState("ingest", "failed", f"no clip was cut ({said or 'no report'}; see "
                                              f"{ws.reports_dir / 'ingest.json'}): fix the inputs and rerun")
    if problems:
        detail += f"; {sum(problems.values())} problem(s): {said} (reports/ingest.json)"
    return StageState("ingest", "done", detail)


def run(ws, *, movies_dir=None, annotations=(), label_map=None, excluded=(), changes: dict | None = None,
        workers: int | None = None, strict: bool = False, force: bool = False, progress: bool = True,
        allow_empty: bool = False, engine=None, shard=None, merge: bool = False,
        log: Callable[[str], None] = print) -> Summary:
    """``refava ingest`` on workspace ``ws``: paths and clip settings from refava.toml unless given (``changes``:
    clip settings to change); a run with nothing to do says so and repeats the last run's problems.  Settings
    given here are recorded in refava.toml once the run succeeded, so `refava status` and the next plain run
    agree with it.  The progress and the tables' summary go to ``log`` as the run goes."""
    from dataclasses import replace

    from ..engine import Engine
    from ..errors import ConfigError

    changes = changes or {}
    workers = workers if workers is not None else ws.config["ingest"]["workers"]
    engine = engine or Engine("local", workers)
    try:
        settings = replace(clip_settings(ws), **changes)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    overridden = bool(movies_dir or annotations or label_map or excluded or changes)
    ann = [Path(a) for a in annotations] or ws.paths("ava", "annotations")
    if not ann:
        raise ConfigError("no annotation files: set [ava] annotations in refava.toml or pass --annotations")
    if not overridden and not force and not strict and not shard and not merge:
        current = state(ws)
        if current.state == "done":
            return Summary("ingest", [f"ingest: {current.detail}; nothing to do (--force redoes it)",
                                      *_last_problems(ws)])
    ingest(ws.root, Path(movies_dir) if movies_dir else ws.path(ws.config["ava"]["movies_dir"]), ann,
           label_map=label_map or ws.optional_path("ava", "label_map"),
           excluded_files=[Path(e) for e in excluded] or ws.paths("ava", "excluded"), settings=settings,
           workers=workers, strict=strict, force=force, progress=progress, log=log,
           allow_empty=allow_empty, engine=engine, shard=shard, merge=merge)
    lines = []
    if overridden:              # what this run did is what refava.toml says from now on (a failed run records nothing)
        lines += _record_settings(ws, changes, movies_dir, annotations, label_map, excluded)
    return Summary("ingest", lines)


def _record_settings(ws, changes: dict, movies_dir, annotations, label_map, excluded) -> list[str]:
    """Settings given on the command line go into refava.toml; returns the line that says so (or none)."""
    def rel(path) -> str:
        return os.path.relpath(Path(path).absolute(), ws.root)

    said = []
    for key, value in changes.items():
        if ws.config["clips"].get(key) != value:
            ws.config["clips"][key] = value
            said.append(f"[clips] {key} = {value}")
    paths = {"movies_dir": rel(movies_dir) if movies_dir else None,
             "annotations": [rel(a) for a in annotations] or None, "label_map": rel(label_map) if label_map else None,
             "excluded": [rel(e) for e in excluded] or None}
    for key, value in paths.items():
        if value is not None and ws.config["ava"].get(key) != value:
            ws.config["ava"][key] = value
            said.append(f"[ava] {key} = {value}")
    if not said:
        return []
    ws.save()
    return [f"recorded in {ws.root / 'refava.toml'}: {'; '.join(said)}"]


def _last_problems(ws, most: int = 10) -> list[str]:
    """A rerun with nothing to do still says what the last run skipped (from reports/ingest.json)."""
    try:
        problems = json.loads((ws.reports_dir / "ingest.json").read_text()).get("problems") or []
    except (OSError, ValueError):
        return []
    lines = [f"  {Problem.from_dict(p).message()}" for p in problems[:most]]
    if len(problems) > most:
        lines.append(f"  ... {len(problems) - most} more in {ws.reports_dir / 'ingest.json'}")
    return lines
