"""SIGKILL during `refava annotate push` (describe and verify) and `pull`, against a real Label Studio server: the
rerun leaves the project with the tasks of an uninterrupted push, none twice, the workspace's task map and keyframes
equal, the pulled table equal byte for byte; no temporary file, no process left (the conformance suite's "sigkill"
cells of annotate push and pull point here)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_kill import POINTS, alive, kill_at, leftovers

from .conftest import TOKEN

pytestmark = pytest.mark.slow


def _env(monkeypatch, base: Path) -> None:
    """The run's environment, for the killed runs too (kill_at passes this process's environment on)."""
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(base))


def _refava(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "refava", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-2000:]
    return proc


def _project(ws: Path, stage: str) -> int:
    import tomllib

    return int(tomllib.loads((ws / "refava.toml").read_text())["labelstudio"][f"{stage}_project"])


def _tasks(url: str, ws: Path, stage: str) -> list:
    """The project's tasks as a verifier or annotator sees them, images by file name (the workspaces' folders
    differ), sorted: equal lists mean the same tasks, none twice."""
    from refava.annotate.labelstudio import Client

    out = []
    for task in Client(url, TOKEN).tasks(_project(ws, stage)):
        data = dict(task["data"])
        data["image"] = data["image"].rsplit("/", 1)[-1]
        out.append(json.dumps({"data": data, "predictions": [p.get("result") for p in task.get("predictions") or []]},
                              sort_keys=True))
    return sorted(out)


def _files(ws: Path) -> dict:
    root = ws / "labelstudio"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _killed_then_rerun(base: Path, name: str, args: list, duration: float, point: float) -> Path:
    ws = base.parent / name
    shutil.copytree(base, ws)
    children = kill_at(ws, args, point * duration)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if alive(p)], f"{args}: processes left after a kill at {point}"
    time.sleep(1.0)              # a request the killed run had sent may still be committing on the server
    _refava(*args, cwd=ws)
    assert leftovers(ws) == [], (args, point, leftovers(ws))
    return ws


@pytest.mark.parametrize("stage", ["describe", "verify"])
def test_sigkill_during_push_then_a_rerun_gives_the_tasks_of_an_uninterrupted_push(server, sample_workspace_template,
                                                                                  monkeypatch, stage):
    url, root = server
    _env(monkeypatch, root)
    base = root / f"kill-{stage}" / "base"
    shutil.copytree(sample_workspace_template, base)
    if stage == "verify":                 # accepted expressions to verify: the sample's describe answers
        from refava.workspace import Workspace

        exports = Path(Workspace.load(base).config["ava"]["annotations"][0]).parent
        _refava("annotate", "import", exports / "labelstudio_describe_export.json", cwd=base)
        _refava("annotate", "check", cwd=base)
    args = ["annotate", "push", "--stage", stage, "--url", url]
    reference = base.parent / "reference"
    shutil.copytree(base, reference)
    started = time.monotonic()
    _refava(*args, cwd=reference)
    duration = time.monotonic() - started
    expected, files = _tasks(url, reference, stage), _files(reference)
    assert expected and len(set(expected)) == len(expected)
    for point in POINTS:
        ws = _killed_then_rerun(base, f"killed-{point}", args, duration, point)
        got = _tasks(url, ws, stage)
        assert got == expected, f"{stage}: kill at {point}: {len(got)} tasks against {len(expected)}"
        assert _files(ws) == files, f"{stage}: kill at {point}: other keyframes or task map"


def test_sigkill_during_pull_then_a_rerun_writes_the_same_table(server, sample_workspace_template, monkeypatch):
    from refava.annotate.labelstudio import Client
    from refava.records import Instances

    url, root = server
    _env(monkeypatch, root)
    base = root / "kill-pull" / "base"
    shutil.copytree(sample_workspace_template, base)
    _refava("annotate", "push", "--stage", "describe", "--url", url, cwd=base)
    api = Client(url, TOKEN)
    people: dict[str, list] = {}
    for inst in Instances.from_parquet(base / "tables" / "instances.parquet"):
        people.setdefault(inst.clip_id, []).append(inst)
    for n, task in enumerate(api.tasks(_project(base, "describe"))[:6]):
        result = []
        for k, inst in enumerate(sorted(people[task["data"]["clip_id"]], key=lambda i: i.person_id)):
            x1, y1, x2, y2 = inst.box_xyxy
            result.append({"id": f"person_{inst.person_id}", "from_name": "expression", "to_name": "image",
                           "type": "textarea", "value": {"x": 100 * x1, "y": 100 * y1, "width": 100 * (x2 - x1),
                                                         "height": 100 * (y2 - y1), "rotation": 0,
                                                         "text": [f"the person number {k + 1} of task {n}"]}})
        api.call("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": result, "lead_time": 5,
                                                                         "completed_by": 1})
    args = ["annotate", "pull", "--url", url]
    reference = base.parent / "reference"
    shutil.copytree(base, reference)
    started = time.monotonic()
    _refava(*args, cwd=reference)
    duration = time.monotonic() - started
    expected = (reference / "tables" / "annotations.parquet").read_bytes()
    for point in POINTS:
        ws = _killed_then_rerun(base, f"killed-{point}", args, duration, point)
        assert (ws / "tables" / "annotations.parquet").read_bytes() == expected, f"pull: kill at {point}"


@pytest.mark.parametrize("stage", ["describe", "verify"])
def test_a_task_imported_twice_is_removed_by_the_next_push_and_answered_ones_are_kept(server,
                                                                                     sample_workspace_template,
                                                                                     monkeypatch, stage):
    """A push killed after sending its import, rerun before the server committed it, imports the tasks again: the
    next push removes the unanswered copies (the same clip, or the same task key), keeping one task per clip or key
    (one with an answer where there is one: answers are never deleted), and says so."""
    from refava.annotate.labelstudio import Client

    url, root = server
    _env(monkeypatch, root)
    ws = root / f"twice-{stage}"
    shutil.copytree(sample_workspace_template, ws)
    if stage == "verify":
        from refava.workspace import Workspace

        exports = Path(Workspace.load(ws).config["ava"]["annotations"][0]).parent
        _refava("annotate", "import", exports / "labelstudio_describe_export.json", cwd=ws)
        _refava("annotate", "check", cwd=ws)
    _refava("annotate", "push", "--stage", stage, "--url", url, cwd=ws)
    expected = _tasks(url, ws, stage)
    api = Client(url, TOKEN)
    project = _project(ws, stage)
    tasks = sorted(api.tasks(project), key=lambda t: t["id"])
    again = [{"data": t["data"], **({"predictions": [{"model_version": p.get("model_version", ""),
                                                       "result": p["result"]} for p in t.get("predictions") or []]}
                                     if stage == "describe" else {})} for t in tasks[:3]]
    api.import_tasks(project, again)                                   # the second import of three tasks
    copies = sorted(api.tasks(project), key=lambda t: t["id"])[-3:]
    answered = copies[0]                                               # someone answered a copy meanwhile
    api.call("POST", f"/api/tasks/{answered['id']}/annotations/", json={
        "result": [], "lead_time": 1, "completed_by": 1, "was_cancelled": True})
    proc = _refava("annotate", "push", "--stage", stage, "--url", url, cwd=ws)
    # the two unanswered copies, and the original whose copy holds an answer: one task per clip or key is left
    assert "3 duplicate task(s) removed" in proc.stdout, proc.stdout
    left = {t["id"] for t in api.tasks(project)}
    assert answered["id"] in left and not ({c["id"] for c in copies[1:]} & left) and tasks[0]["id"] not in left
    assert _tasks(url, ws, stage) == expected
    again = _refava("annotate", "push", "--stage", stage, "--url", url, cwd=ws)
    assert "duplicate" not in again.stdout and _tasks(url, ws, stage) == expected
