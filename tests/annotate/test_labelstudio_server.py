"""`refava annotate push / pull` against a real Label Studio server (1.23.x, its own virtual environment).

The server is started by tools/labelstudio.sh on 127.0.0.1 with SQLite; `make test` installs it first
(`tools/labelstudio.sh install`).  Two users answer through the REST API: the admin (describe) and a second annotator
(describe of one clip, and every verify task), recorded by Label Studio as each annotation's `completed_by`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from .conftest import ADMIN, TOKEN

pytestmark = pytest.mark.slow


def refava(*args, cwd, token=TOKEN, root=None):
    env = {**os.environ, "LABEL_STUDIO_API_KEY": token}
    if root:
        env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] = str(root)
    return subprocess.run([sys.executable, "-m", "refava", *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_push_answer_as_two_users_pull_and_check(server, sample_workspace_template):
    from refava.annotate.labelstudio import Client, LabelStudioError

    url, base = server
    ws = base / "ws"
    shutil.copytree(sample_workspace_template, ws)
    first = refava("annotate", "push", "--stage", "describe", "--url", url, cwd=ws, root=base)
    assert first.returncode == 0, first.stderr
    again = refava("annotate", "push", "--stage", "describe", "--url", url, cwd=ws, root=base)
    assert again.returncode == 0 and " 0 tasks added" in again.stdout                  # never duplicates
    api = Client(url, TOKEN)
    second = api.call("POST", "/api/users/", json={"email": "ann2@refava.local", "username": "ann2",
                                                    "password": "ann2-secret-pass"})["id"]
    describe_project = int(first.stdout.split("project ")[1].split(",")[0])
    from refava.records import Instances

    people: dict[str, list] = {}
    for inst in Instances.from_parquet(ws / "tables" / "instances.parquet"):
        people.setdefault(inst.clip_id, []).append(inst)
    tasks = api.tasks(describe_project)
    chosen = [t for t in tasks if len(people[t["data"]["clip_id"]]) >= 2][:4]
    colours = ["red", "blue", "green", "yellow", "black", "white"]
    plan = {}
    for n, task in enumerate(chosen):
        result = []
        for k, inst in enumerate(sorted(people[task["data"]["clip_id"]], key=lambda i: i.person_id)):
            pid = inst.person_id
            x1, y1, x2, y2 = inst.box_xyxy
            region = {"id": f"person_{pid}", "value": {"x": 100 * x1, "y": 100 * y1, "width": 100 * (x2 - x1),
                                                       "height": 100 * (y2 - y1), "rotation": 0}}
            text = f"the person in a {colours[k]} coat seen as number {k + 1}"
            if n == 0 and k == 0:
                text = "the person in a red coat who is walking"                     # an action word
            if n == 1 and k == 1:
                text = f"the person in a {colours[0]} coat seen as number 1"         # a duplicate in its clip
            plan[f"{task['data']['clip_id']}___{pid}"] = text
            result.append({"id": region["id"], "from_name": "expression", "to_name": "image", "type": "textarea",
                           "value": {**region["value"], "text": [text]}})
        api.call("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": result, "lead_time": 30,
                                                                         "completed_by": 1})
    pull = refava("annotate", "pull", "--url", url, cwd=ws)
    assert pull.returncode == 0, pull.stderr
    push_verify = refava("annotate", "push", "--stage", "verify", "--url", url, cwd=ws, root=base)
    assert push_verify.returncode == 0, push_verify.stderr
    verify_project = int(push_verify.stdout.split("project ")[1].split(",")[0])
    verify_tasks = api.export(verify_project)
    action = next(i for i, t in plan.items() if "walking" in t)
    dup = [i for i, t in plan.items() if t.endswith("number 1") and i.startswith(chosen[1]["data"]["clip_id"])]
    mapping = json.loads((ws / "labelstudio" / "verify_tasks.json").read_text())
    # only the work: expressions that failed a check (the action word, the duplicates) are not sent to verifiers
    assert {mapping[t["data"]["task_key"]]["instance_id"] for t in verify_tasks} == set(plan) - {action} - set(dup)
    # blind: nothing a verifier sees names the instance, the person or the box numbers' meaning
    for task in api.tasks(verify_project):
        seen = json.dumps({k: v for k, v in task.items() if k not in ("id", "project")})
        entry = mapping[task["data"]["task_key"]]
        assert set(task["data"]) == {"image", "expression", "task_key", "options"}, task["data"]
        assert entry["instance_id"] not in seen, seen
        assert "box_numbers" not in seen and "person_" not in seen
        assert not task.get("predictions")
    failed = sorted(iid for iid in plan if iid.startswith(chosen[2]["data"]["clip_id"]) and iid not in dup)[0]

    def answer(task, iid, numbers, who, wrong=False):
        right = next(n for n, p in numbers.items() if str(p) == iid.rsplit("___", 1)[1])
        pick = next(n for n in numbers if n != right) if wrong else right
        api.call("POST", f"/api/tasks/{task['id']}/annotations/", json={
            "result": [{"id": "pick", "from_name": "pick", "to_name": "image", "type": "choices",
                        "value": {"choices": [pick]}}], "lead_time": 8, "completed_by": who})

    for task in verify_tasks:
        entry = mapping[task["data"]["task_key"]]
        answer(task, entry["instance_id"], entry["box_numbers"], second, wrong=entry["instance_id"] == failed)
    assert refava("annotate", "pull", "--url", url, cwd=ws).returncode == 0
    rows = pq.read_table(ws / "tables" / "annotations.parquet").to_pylist()
    # two different users, named by their account emails (stable across servers), not by server-local ids
    assert {r["annotator"] for r in rows} == {ADMIN[0], "ann2@refava.local"}
    check = refava("annotate", "check", cwd=ws)
    assert check.returncode == 0, check.stderr
    status = {r["instance_id"]: r for r in pq.read_table(ws / "tables" / "annotation_status.parquet").to_pylist()}
    assert status[action]["status"] == "needs_revision" and any("action_word" in r for r in status[action]["reasons"])
    assert all(any("duplicate_in_clip" in r for r in status[i]["reasons"]) for i in dup) and len(dup) == 2
    assert "failed_verification" in status[failed]["reasons"]
    accepted = {i for i in plan if status[i]["status"] == "accepted"}
    assert accepted == set(plan) - {action, failed} - set(dup) and accepted
    # pushing again sends nothing already done
    for stage in ("describe", "verify"):
        again = refava("annotate", "push", "--stage", stage, "--url", url, cwd=ws, root=base)
        assert again.returncode == 0 and " 0 tasks added" in again.stdout, again.stdout
    # a rewritten expression is not accepted until it is verified again, and not by its own describer
    rewritten = sorted(accepted)[0]
    task = next(t for t in chosen if rewritten.startswith(t["data"]["clip_id"]))
    result = []
    for inst in sorted(people[task["data"]["clip_id"]], key=lambda i: i.person_id):
        iid = f"{task['data']['clip_id']}___{inst.person_id}"
        text = plan[iid].replace("coat", "long coat") if iid == rewritten else plan[iid]
        result.append({"id": f"person_{inst.person_id}", "from_name": "expression", "to_name": "image",
                       "type": "textarea", "value": {"text": [text]}})
    api.call("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": result, "lead_time": 5,
                                                                     "completed_by": 1})

    def status_of(iid):
        assert refava("annotate", "pull", "--url", url, cwd=ws).returncode == 0
        assert refava("annotate", "check", cwd=ws).returncode == 0
        rows = pq.read_table(ws / "tables" / "annotation_status.parquet").to_pylist()
        return next(r for r in rows if r["instance_id"] == iid)

    assert status_of(rewritten)["status"] == "pending_verification"
    pushed = refava("annotate", "push", "--stage", "verify", "--url", url, cwd=ws, root=base)
    assert " 1 tasks added" in pushed.stdout, pushed.stdout
    mapping = json.loads((ws / "labelstudio" / "verify_tasks.json").read_text())
    key, entry = next((k, e) for k, e in mapping.items() if e["instance_id"] == rewritten and "long coat" in e["text"])
    new_task = next(t for t in api.tasks(verify_project) if t["data"]["task_key"] == key)
    answer(new_task, rewritten, entry["box_numbers"], 1)                 # the describer verifies their own text
    mine = status_of(rewritten)
    assert mine["status"] == "pending_verification" and any(r.startswith("self_verified") for r in mine["reasons"])
    answer(new_task, rewritten, entry["box_numbers"], second)
    assert status_of(rewritten)["status"] == "accepted"
    # pulling again adds nothing; a task deleted in Label Studio loses no stored answer
    before = len(pq.read_table(ws / "tables" / "annotations.parquet").to_pylist())
    again = refava("annotate", "pull", "--url", url, cwd=ws)
    assert again.returncode == 0 and "0 new answers" in again.stdout
    api.call("DELETE", f"/api/tasks/{chosen[0]['id']}/")
    assert refava("annotate", "pull", "--url", url, cwd=ws).returncode == 0
    assert len(pq.read_table(ws / "tables" / "annotations.parquet").to_pylist()) == before
    # a wrong token and a server that is down give clear errors, and the token is never printed
    wrong = refava("annotate", "pull", "--url", url, cwd=ws, token="wrong-token-0000000000000")
    assert wrong.returncode != 0 and "refused the token" in wrong.stderr and "wrong-token" not in wrong.stderr
    down = refava("annotate", "pull", "--url", "http://127.0.0.1:9", cwd=ws)
    assert down.returncode != 0 and "cannot reach Label Studio" in down.stderr
    with pytest.raises(LabelStudioError, match="LABEL_STUDIO_API_KEY"):
        Client(url, "")


def test_a_personal_access_token_works_and_projects_carry_the_workspace_and_the_guidelines(
        server, sample_workspace_template):
    """Label Studio now hands out personal access tokens (JWT refresh tokens, exchanged at /api/token/refresh/):
    refava takes them as it takes legacy tokens, in LABEL_STUDIO_API_KEY; the URL may come from LABEL_STUDIO_URL."""
    from refava.annotate.labelstudio import Client

    url, base = server
    ws = base / "pat-ws"
    shutil.copytree(sample_workspace_template, ws)
    api = Client(url, TOKEN)
    api.call("POST", "/api/jwt/settings", json={"api_tokens_enabled": True, "legacy_api_tokens_enabled": True,
                                                 "api_token_ttl_days": 30})
    try:
        pat = api.call("POST", "/api/token/", json={})["token"]
    except Exception:                                                        # one exists already: rotate it
        pat = api.call("POST", "/api/token/rotate/", json={"refresh": api.call("GET", "/api/token/")[0]["token"]})
        pat = pat.get("refresh") or pat.get("token")
    assert Client.is_personal_access_token(pat) and not Client.is_personal_access_token(TOKEN)
    env = {"LABEL_STUDIO_URL": url}
    proc = subprocess.run([sys.executable, "-m", "refava", "annotate", "push", "--stage", "describe"], cwd=ws,
                          capture_output=True, text=True,
                          env={**os.environ, **env, "LABEL_STUDIO_API_KEY": pat,
                               "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(base)})
    assert proc.returncode == 0, proc.stderr
    assert pat not in proc.stdout + proc.stderr
    project_id = int(proc.stdout.split("project ")[1].split(",")[0])
    project = Client(url, pat).call("GET", f"/api/projects/{project_id}")
    assert project["title"] == "RefAVA describe (pat-ws)"
    assert "<h" in project["expert_instruction"] and project["show_instruction"]
    wrong = pat[:-4] + ("AAAA" if not pat.endswith("AAAA") else "BBBB")
    proc = subprocess.run([sys.executable, "-m", "refava", "annotate", "pull"], cwd=ws, capture_output=True,
                          text=True, env={**os.environ, **env, "LABEL_STUDIO_API_KEY": wrong})
    assert proc.returncode != 0 and "refused the token" in proc.stderr and wrong not in proc.stderr


def test_push_finds_the_document_root_fails_clearly_without_one_and_repairs_broken_tasks(
        server, sample_workspace_template, tmp_path):
    """The server serves files from one folder above the workspace and refava's environment does not say so: push
    asks the server which path serves the keyframes; tasks pushed earlier with a wrong path are repaired; a
    workspace outside the server's document root fails with a message that says what to do, adding nothing."""
    from refava.annotate.labelstudio import Client

    url, base = server
    ws = base / "root-ws"
    shutil.copytree(sample_workspace_template, ws)
    api = Client(url, TOKEN)
    wrong = refava("annotate", "push", "--stage", "describe", "--url", url, cwd=ws, root=ws)   # not the server's
    assert wrong.returncode != 0 and "does not serve the keyframes" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr
    first = refava("annotate", "push", "--stage", "describe", "--url", url, cwd=ws)      # no document root given
    assert first.returncode == 0, first.stderr
    project = int(first.stdout.split("project ")[1].split(",")[0])
    tasks = api.tasks(project)
    assert tasks and all(api.status(t["data"]["image"]) == 200 for t in tasks[:5])
    # tasks as an older refava pushed them, relative to the workspace instead of the server's root: 404
    for task in tasks[:3]:
        broken = task["data"]["image"].replace("d=root-ws/", "d=")
        api.call("PATCH", f"/api/tasks/{task['id']}", json={"data": {**task["data"], "image": broken}})
        assert api.status(broken) == 404
    again = refava("annotate", "push", "--stage", "describe", "--url", url, cwd=ws)
    assert again.returncode == 0 and "3 repaired" in again.stdout, again.stdout
    assert all(api.status(t["data"]["image"]) == 200 for t in api.tasks(project))
    outside = tmp_path / "elsewhere"
    shutil.copytree(sample_workspace_template, outside)
    proc = refava("annotate", "push", "--stage", "describe", "--url", url, cwd=outside)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "does not serve the keyframes" in proc.stderr and "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT" in proc.stderr
    projects = api.call("GET", "/api/projects")
    items = projects.get("results", projects) if isinstance(projects, dict) else projects
    mine = [p for p in items if p["title"] == "RefAVA describe (elsewhere)"]
    assert all(p.get("task_number", 0) == 0 for p in mine)
