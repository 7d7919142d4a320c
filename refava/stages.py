"""Stage bookkeeping: which stages are done, stale or missing in a workspace (``refava status``)."""
from __future__ import annotations

from dataclasses import dataclass

from .tables import read_provenance
from .workspace import Workspace


@dataclass(frozen=True)
class StageState:
    stage: str
    state: str   # done, stale, missing, failed
    detail: str


def ingest_inputs(ws: Workspace, settings=None) -> dict:
    from .ingest import ingest_provenance

    settings = settings or clip_settings(ws)
    return ingest_provenance(ws.path(ws.config["ava"]["movies_dir"]), ws.paths("ava", "annotations"),
                             ws.optional_path("ava", "label_map"), ws.paths("ava", "excluded"), settings)


def clip_settings(ws: Workspace):
    from .ingest import ClipSettings

    return ClipSettings(**ws.config["clips"])


def _compare(stored: dict | None, expected: dict, outputs: list[str]) -> tuple[str, str]:
    if stored is None:
        return "missing", f"no {', '.join(outputs)} yet"
    changed = [k for k in expected if stored.get(k) != expected[k]]
    if changed:
        return "stale", "changed since the last run: " + ", ".join(changed)
    return "done", f"up to date ({', '.join(outputs)})"


def stage_states(ws: Workspace) -> list[StageState]:
    """The state of every stage this version of refava has, in pipeline order."""
    states = []
    outputs = ["movies", "instances", "clips"]
    stored = [read_provenance(ws.table(name)) for name in outputs]
    if any(s is None for s in stored):
        states.append(StageState("ingest", "missing", "run `refava ingest`"))
    else:
        try:
            expected = ingest_inputs(ws)
        except OSError as exc:
            states.append(StageState("ingest", "stale", f"an input cannot be read: {exc}"))
        else:
            relevant = {k: v for k, v in stored[0].items() if k in expected}
            state, detail = _compare(relevant, expected, [f"tables/{n}.parquet" for n in outputs])
            states.append(StageState("ingest", state, detail))
    if ws.table("annotations").exists():
        states.append(_derived_stage(ws, "annotate check", "annotation_status", ["instances", "annotations"]))
    split_inputs = ["instances"] + (["annotation_status"] if ws.table("annotation_status").exists() else [])
    states.append(_derived_stage(ws, "build-splits", "splits", split_inputs))
    if ws.table("corruptions").exists():
        states.append(_derived_stage(ws, "corrupt", "corruptions", ["splits"]))
    return states


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
