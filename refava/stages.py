"""Stage bookkeeping: which stages are done, stale, partial, failed or missing in a workspace (``refava status``).

Every answer comes from what the stages recorded (input hashes in a table's metadata, a report, a manifest) and
from what is on disk now; a stage whose outputs are there but whose inputs changed is stale, one that stopped half
way is partial, and an ingest that produced nothing is failed, with its problems repeated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from .framestore import CORRUPTED_DIR
from .ingest.stage import state as _ingest_state
from .summary import StageState
from .tables import read_provenance
from .workspace import Workspace


def recover(ws: Workspace) -> list[str]:
    """Put right what killed runs left in ``ws``: finish an interrupted joint table commit, delete their temporary
    files, restore or remove the packaged dataset's swap folders (only those of this host).  Returns what was done
    (for a log line); a read-only workspace is left as it is."""
    from .fsutil import clean_stale_temporaries
    from .package import recover_interrupted
    from .tables import recover_commit

    done: list[str] = []
    try:
        if ws.tables_dir.is_dir():
            done += [f"finished the interrupted commit of tables/{name}" for name in recover_commit(ws.tables_dir)]
        removed = clean_stale_temporaries(ws.root)
        if removed:
            done.append(f"removed {len(removed)} temporary file(s) of killed runs")
        if any(ws.root.glob(".refava.*~*.*")):
            done += recover_interrupted(ws.root / "refava", log=lambda *_: None)
    except OSError:
        pass
    return done


def _corrupt_state(ws: Workspace) -> StageState | None:
    folder = ws.root / CORRUPTED_DIR
    settings = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.parquet"))) if folder.is_dir() else []
    if not ws.table("corruptions").exists():
        if settings:
            return StageState("corrupt", "partial", f"corrupted frames of {', '.join(settings)} without a manifest "
                                                    f"(a run stopped): run the same `refava corrupt` again to finish")
        return None
    state = _derived_stage(ws, "corrupt", "corruptions", ["splits"])
    if state.state != "done":
        return state
    from .tables import read_table

    listed = set(read_table("corruptions", ws.table("corruptions"), columns=["path"]).column("path").to_pylist())
    gone = sorted(p for p in listed if not (ws.root / p).exists())
    if gone:
        return StageState("corrupt", "partial", f"{len(gone)} corrupted frame store(s) in the manifest are missing "
                                                f"({gone[0]}): run `refava corrupt` again")
    return state


def _stats_state(ws: Workspace) -> StageState | None:
    from .fsutil import sha256_file

    record = ws.reports_dir / "stats" / "inputs.json"
    if not (ws.reports_dir / "stats.html").exists():
        return None
    try:
        inputs = json.loads(record.read_text())["inputs"]
    except (OSError, ValueError, KeyError):
        return StageState("stats", "stale", "made by an older refava without input hashes: run `refava stats`")
    now = {n: sha256_file(ws.table(n)) for n in inputs if ws.table(n).exists()}
    changed = sorted(n for n in inputs if now.get(n) != inputs[n])
    if changed:
        return StageState("stats", "stale", f"input table(s) changed since: {', '.join(changed)}: run `refava stats`")
    return StageState("stats", "done", "up to date (reports/stats.html)")


def _manifest_digest(ws: Workspace) -> str | None:
    from .fsutil import sha256_file
    from .package.format import MANIFEST

    path = ws.root / "refava" / MANIFEST
    return sha256_file(path) if path.exists() else None


def _package_state(ws: Workspace) -> tuple[StageState | None, str | None]:
    from .fsutil import sha256_file
    from .package.format import MANIFEST

    path = ws.root / "refava" / MANIFEST
    if not path.exists():
        return (StageState("package", "missing", "run `refava package`") if ws.table("splits").exists() else None), None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return StageState("package", "failed", f"{path} cannot be read: run `refava package`"), None
    inputs = manifest.get("inputs") or {}
    names = set(inputs) | {n for n in ("instances", "annotation_status", "splits", "rephrasings", "corruptions")
                           if ws.table(n).exists()}
    changed = sorted(n for n in names if (sha256_file(ws.table(n)) if ws.table(n).exists() else None) != inputs.get(n))
    digest = sha256_file(path)
    if changed:
        return StageState("package", "stale", f"input table(s) changed since: {', '.join(changed)}: run "
                                              f"`refava package`"), digest
    return StageState("package", "done", "up to date (refava/; `refava package --verify refava` checks it)"), digest


def _validation_state(ws: Workspace, manifest_digest: str | None) -> StageState | None:
    path = ws.reports_dir / "validation" / "report.json"
    if not path.exists():
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return StageState("validate-dataset", "failed", f"{path} cannot be read: run `refava validate-dataset`")
    if report.get("dataset_manifest_sha256") is None:
        return StageState("validate-dataset", "stale", "made by an older refava: run `refava validate-dataset`")
    if report["dataset_manifest_sha256"] != manifest_digest:
        return StageState("validate-dataset", "stale", "the packaged dataset changed since: run "
                                                       "`refava validate-dataset`")
    return StageState("validate-dataset", "done", f"up to date (reports/validation/report.md: {report.get('verdict', '')})"[:200])


def _derived_stage(ws: Workspace, stage: str, table: str, inputs: list[str]) -> StageState:
    """A stage whose output table records the hashes of the tables it read."""
    from .fsutil import sha256_file

    stored = read_provenance(ws.table(table))
    if stored is None:
        return StageState(stage, "missing", f"run `refava {stage}`")
    if stored.get("inputs") is None:
        return StageState(stage, "stale", "made by an older refava without input hashes")
    missing = [name for name in inputs if not ws.table(name).exists()]
    if missing:
        return StageState(stage, "stale", f"input table(s) {missing} are gone")
    expected = {name: sha256_file(ws.table(name)) for name in inputs}
    changed = [name for name in inputs if stored.get("inputs", {}).get(name) != expected[name]]
    if changed:
        return StageState(stage, "stale", "input table(s) changed since the last run: " + ", ".join(changed))
    return StageState(stage, "done", f"up to date (tables/{table}.parquet)")


# --- the declarations -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """One command that writes the workspace, declared once: what it reads and writes, the lock it holds while it
    runs (a second writer of the same lock is refused), and how `refava status` tells its state (None: a command
    that status does not list)."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    lock: str
    state: Callable[[Workspace], StageState | None] | None = None
    run: str = ""          # "module:function", the stage's run(workspace, ...) -> Summary (imported when run)

    def entry(self) -> Callable:
        """The stage's run function (imported here: `refava --help` stays instant)."""
        import importlib

        module, _, name = self.run.partition(":")
        return getattr(importlib.import_module(module), name)


def _annotate_state(ws: Workspace) -> StageState | None:
    if not ws.table("annotations").exists():
        return None
    return _derived_stage(ws, "annotate check", "annotation_status", ["instances", "annotations"])


def _splits_state(ws: Workspace) -> StageState:
    inputs = ["instances"] + (["annotation_status"] if ws.table("annotation_status").exists() else [])
    return _derived_stage(ws, "build-splits", "splits", inputs)


def _rephrase_state(ws: Workspace) -> StageState | None:
    if not ws.table("rephrasings").exists():
        return None
    return _derived_stage(ws, "rephrase", "rephrasings", ["splits", "annotation_status"])


STAGES: tuple[Stage, ...] = (
    Stage("ingest", ("movies_dir", "[ava] annotation files"),
          ("tables/movies", "tables/instances", "tables/clips", "frames/clean", "reports/ingest.json"),
          "ingest", _ingest_state, "refava.ingest.stage:run"),
    Stage("annotate import", ("a Label Studio export",), ("tables/annotations",), "annotate",
          run="refava.annotate.io:import_export_file"),
    Stage("annotate push", ("tables/instances", "tables/annotations"), ("labelstudio/",), "annotate",
          run="refava.annotate.labelstudio:push"),
    Stage("annotate pull", ("a Label Studio server",), ("labelstudio/", "tables/annotations"), "annotate",
          run="refava.annotate.labelstudio:pull"),
    Stage("annotate check", ("tables/instances", "tables/annotations"), ("tables/annotation_status",), "annotate",
          _annotate_state, "refava.annotate.checks:run"),
    Stage("build-splits", ("tables/instances", "tables/annotation_status"),
          ("tables/splits", "reports/splits.json", "reports/splits.md"), "build-splits", _splits_state,
          "refava.splits:run"),
    Stage("stats", ("tables/instances", "tables/clips", "tables/splits", "tables/annotation_status", "frames/clean"),
          ("reports/stats.html", "reports/stats/"), "stats", _stats_state, "refava.stats:run"),
    Stage("corrupt", ("tables/splits", "frames/clean"), ("frames/corrupted", "tables/corruptions"), "corrupt",
          _corrupt_state, "refava.corrupt.stage:run"),
    Stage("rephrase", ("tables/splits", "tables/annotation_status"), ("tables/rephrasings", "cache/rephrase"),
          "rephrase", _rephrase_state, "refava.rephrase.stage:run"),
    Stage("package", ("tables/*", "frames/"), ("refava/",), "package", lambda ws: _package_state(ws)[0],
          "refava.package.build:run"),
    Stage("validate-dataset", ("refava/",), ("reports/validation/",), "validate-dataset",
          lambda ws: _validation_state(ws, _manifest_digest(ws)), "refava.train.validation:validate_dataset"),
    Stage("train", ("refava/",), ("runs/",), "train", run="refava.train.runs:train_run"),
)
BY_NAME = {stage.name: stage for stage in STAGES}


def declared(name: str) -> Stage:
    """The declaration of the command ``name`` (a KeyError names a command that writes without one)."""
    return BY_NAME[name]


def stage_states(ws: Workspace) -> list[StageState]:
    """The state of every declared stage, in pipeline order (stages not started yet and optional are left out)."""
    states = []
    for stage in STAGES:
        state = stage.state(ws) if stage.state else None
        if state is not None:
            states.append(state)
    return states
