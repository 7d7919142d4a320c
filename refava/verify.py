"""``refava verify``: is the workspace what its stages wrote?  Frame stores against their recorded checksums
(every JPEG decoded, optionally), and the tables against each other.  Every problem says what to rerun.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .errors import RefavaError
from .framestore import CLEAN_DIR, CORRUPTED_DIR, check_frame_store, recorded_hashes


@dataclass(frozen=True)
class Finding:
    where: str
    problem: str
    rerun: str

    def line(self) -> str:
        return f"{self.where}: {self.problem}\n      -> {self.rerun}"


@dataclass
class WorkspaceReport:
    frame_stores: int = 0
    clips_checked: int = 0
    tables: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _rows(ws, name: str, columns: list[str], report: WorkspaceReport) -> list[dict] | None:
    from .tables import read_table

    path = ws.table(name)
    if not path.exists():
        return None
    try:
        rows = read_table(name, path).select(columns).to_pylist()
    except (RefavaError, OSError, KeyError) as exc:
        report.findings.append(Finding(f"tables/{name}.parquet", f"cannot be read ({str(exc)[:200]})",
                                       f"rerun the stage that writes {name} with --force"))
        return None
    report.tables.append(name)
    return rows


def _check_stores(ws, report: WorkspaceReport, decode: bool, progress: Callable[[int], None]) -> None:
    clean = sorted((ws.root / CLEAN_DIR).glob("*.parquet"))
    corrupted = sorted((ws.root / CORRUPTED_DIR).glob("*/*.parquet"))
    for path in clean + corrupted:
        report.frame_stores += 1
        rel = path.relative_to(ws.root).as_posix()
        if path in clean:
            rerun = f"delete {rel}, then `refava ingest` (it redoes that movie only)"
        else:
            rerun = f"delete {rel}, then rerun the `refava corrupt` that made {path.parent.name} (it redoes that movie only)"
        problems = check_frame_store(path, decode=decode, root=ws.root)
        report.clips_checked += len(recorded_hashes(path) or {})
        for p in problems:
            where = f"{rel} (movie {path.stem}" + (f", clip {p.clip_id})" if p.clip_id else ")")
            report.findings.append(Finding(where, f"{p.kind}: {p.detail}", rerun))
        progress(1)


def _check_tables(ws, report: WorkspaceReport) -> None:
    movies = _rows(ws, "movies", ["video_id"], report)
    clips = _rows(ws, "clips", ["clip_id", "video_id", "frames_file"], report)
    instances = _rows(ws, "instances", ["instance_id", "clip_id"], report)
    if movies is None or clips is None or instances is None:
        if any(x is not None for x in (movies, clips, instances)):
            report.findings.append(Finding("tables/", "some of movies, clips and instances are missing",
                                           "`refava ingest --force`"))
        return
    movie_ids = {r["video_id"] for r in movies}
    clip_ids = {r["clip_id"] for r in clips}
    instance_ids = {r["instance_id"] for r in instances}
    ingest = "`refava ingest --force` (the three ingest tables disagree)"
    for r in clips:
        if r["video_id"] not in movie_ids:
            report.findings.append(Finding(f"tables/clips.parquet clip {r['clip_id']}", "its movie is not in movies",
                                           ingest))
    orphans = [r["instance_id"] for r in instances if r["clip_id"] not in clip_ids]
    if orphans:
        report.findings.append(Finding("tables/instances.parquet", f"{len(orphans)} instance(s) whose clip is not in "
                                       f"clips, e.g. {orphans[0]}", ingest))
    stored: dict[str, set] = {}
    for r in clips:
        path = ws.root / r["frames_file"]
        if r["frames_file"] not in stored:
            stored[r["frames_file"]] = set(recorded_hashes(path) or {}) if path.exists() else None
        have = stored[r["frames_file"]]
        if have is None:
            report.findings.append(Finding(f"tables/clips.parquet clip {r['clip_id']}",
                                           f"its frame store {r['frames_file']} is missing", "`refava ingest`"))
        elif have and r["clip_id"] not in have:
            report.findings.append(Finding(f"{r['frames_file']} (movie {r['video_id']}, clip {r['clip_id']})",
                                           "the clips table lists the clip, its frame store does not hold it",
                                           ingest))
    for name, rerun in (("splits", "`refava build-splits --force`"), ("annotation_status", "`refava annotate check`"),
                        ("rephrasings", "`refava rephrase` for the splits you rephrased")):
        rows = _rows(ws, name, ["instance_id"], report)
        unknown = sorted({r["instance_id"] for r in rows or []} - instance_ids)
        if unknown:
            report.findings.append(Finding(f"tables/{name}.parquet", f"{len(unknown)} instance(s) not in instances "
                                           f"(e.g. {unknown[0]}): written before the last ingest", rerun))
    corruptions = _rows(ws, "corruptions", ["configuration", "clip_id", "video_id", "output_sha256", "path"], report)
    recorded: dict[str, dict | None] = {}
    for r in corruptions or []:
        if r["path"] not in recorded:
            recorded[r["path"]] = recorded_hashes(ws.root / r["path"])
        have = recorded[r["path"]]
        if have is None or have.get(r["clip_id"]) != r["output_sha256"]:
            found = "is missing or unreadable" if have is None else "holds other bytes for it"
            report.findings.append(Finding(f"tables/corruptions.parquet {r['configuration']} clip {r['clip_id']}",
                                           f"its frame store {r['path']} {found}",
                                           f"rerun the `refava corrupt` that made {r['configuration']}"))


def verify_workspace(ws, *, decode: bool = True, progress: bool = True) -> WorkspaceReport:
    """Check every frame store (recorded per-clip sha256, and with ``decode`` every JPEG) and the agreement of
    the tables; return the findings, each with what to rerun."""
    from .progress import bar as _progress

    report = WorkspaceReport()
    n = len(list((ws.root / "frames").glob("clean/*.parquet"))) + len(list((ws.root / "frames").glob("corrupted/*/*.parquet")))
    bar = _progress(total=n, enabled=progress, desc="verify", unit="file")
    try:
        _check_stores(ws, report, decode, bar.update)
    finally:
        bar.close()
    _check_tables(ws, report)
    return report
