"""Annotation QA against real Label Studio servers, in Chromium (issue 27): an adversarial verifier who reads
everything the API, the page and the image URLs expose does no better than chance; the verify stage on its own
server; a describer's answer that does not block the verifiers; honeypots, agreement and the lead's report; the
guidelines' tables rendered as tables; nothing sent outside.

Accounts join the way annotators do: the lead's invite link, opened in Chromium.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from .conftest import TOKEN, VERIFY_TOKEN, sign_up, user_id

pytestmark = pytest.mark.slow
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "grey", "purple"]


def refava(*args, cwd, env=None):
    proc = subprocess.run([sys.executable, "-m", "refava", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "LABEL_STUDIO_API_KEY": TOKEN, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def people_by_clip(ws: Path) -> dict[str, list]:
    from refava.records import Instances

    out: dict[str, list] = defaultdict(list)
    for inst in Instances.from_parquet(ws / "tables" / "instances.parquet"):
        out[inst.clip_id].append(inst)
    return {c: sorted(v, key=lambda i: i.person_id) for c, v in out.items()}


def describe(api, project: int, ws: Path, clips: int, who: int) -> dict[str, str]:
    """``who`` describes every person of the first ``clips`` tasks with two or more people; {instance: text}."""
    people = people_by_clip(ws)
    written = {}
    by_movie: dict[str, list] = defaultdict(list)          # clips of every movie in turn: splits need movies
    for t in sorted(api.tasks(project), key=lambda t: t["data"]["clip_id"]):
        if len(people[t["data"]["clip_id"]]) >= 2:
            by_movie[t["data"]["clip_id"].rsplit("___", 1)[0]].append(t)
    rounds = max(map(len, by_movie.values()))
    tasks = [m[k] for k in range(rounds) for _, m in sorted(by_movie.items()) if k < len(m)][:clips]
    for n, task in enumerate(tasks):
        result = []
        for k, inst in enumerate(people[task["data"]["clip_id"]]):
            text = f"the person in a {COLOURS[k % 8]} coat of group {n} with {['a hat', 'a bag', 'glasses'][k % 3]}"
            written[inst.instance_id] = text
            result.append({"id": f"person_{inst.person_id}", "from_name": "expression", "to_name": "image",
                           "type": "textarea", "value": {"text": [text]}})
        api.call("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": result, "lead_time": 20,
                                                                         "completed_by": who})
    return written


def answer(api, task_id: int, pick: str, who: int) -> None:
    api.call("POST", f"/api/tasks/{task_id}/annotations/", json={
        "result": [{"id": "pick", "from_name": "pick", "to_name": "image", "type": "choices",
                    "value": {"choices": [pick]}}], "lead_time": 6, "completed_by": who})


def right_number(entry: dict) -> str:
    person = int(entry["instance_id"].rsplit("___", 1)[1])
    return next(n for n, p in entry["box_numbers"].items() if p == person)


def adversary(page, url: str, project: int, ws: Path) -> dict:
    """What a verifier can read with their own login (the browser's session): every task of the verify project
    through the API, every image it points to, every file the server might serve; then the best guesses that
    material allows.  Returns {strategy: accuracy}, the chance level, and what was read."""
    def get(path):
        response = page.request.get(url + path)
        return response.status, response.body()

    status, body = get(f"/api/tasks?project={project}&page_size=1000")
    assert status == 200, body[:300]
    listed = json.loads(body)
    tasks = [json.loads(get(f"/api/tasks/{t['id']}")[1]) for t in listed.get("tasks", listed)]
    images = {t["id"]: get(t["data"]["image"])[1] for t in tasks}
    assert all(len(b) > 1000 for b in images.values())                      # the verifier does see the images
    # the workspace's private files are not served, whatever path is tried
    for private in ("labelstudio/verify_tasks.json", "labelstudio/secret.key", "tables/annotations.parquet",
                    "labelstudio/keyframes_numbered/../verify_tasks.json"):
        for prefix in ("", f"{ws.name}/"):
            assert get(f"/data/local-files/?d={prefix}{private}")[0] in (403, 404), private
    people = people_by_clip(ws)                     # public knowledge: AVA's own csv lists clips and person ids
    everyone = [i.instance_id for v in people.values() for i in v]

    def invert(task):                               # the key as sha256(instance, text), any prefix length
        key, text = task["data"]["task_key"], task["data"]["expression"]
        for iid in everyone:
            if hashlib.sha256(f"{iid}\x1f{text}".encode()).hexdigest().startswith(key):
                return iid
        return None

    def by_rank(iid):                               # boxes numbered by person id
        clip, person = iid.rsplit("___", 1)
        return str([i.person_id for i in people[clip]].index(int(person)) + 1)

    def thumb(data):
        import cv2
        import numpy as np

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        return tuple((cv2.resize(image, (6, 4), interpolation=cv2.INTER_AREA) // 32).ravel())

    groups = defaultdict(list)                      # tasks of one keyframe: the same URL or the same picture
    for t in sorted(tasks, key=lambda t: t["id"]):
        groups[(t["data"]["image"].split("?d=")[-1].rsplit("/", 1)[-1] if "keyframes" in t["data"]["image"]
                else "", thumb(images[t["id"]]))].append(t["id"])
    position = {tid: str(k + 1) for ids in groups.values() for k, tid in enumerate(ids)}
    guesses = {"key inverted, boxes by person id": {}, "k-th task of a keyframe is box k": {}, "always box 1": {},
               "box named in the URL or fields": {}}
    for t in tasks:
        options = [o["value"] for o in t["data"]["options"] if o["value"] != "none"]
        iid = invert(t)
        guesses["key inverted, boxes by person id"][t["id"]] = by_rank(iid) if iid else "1"
        guesses["k-th task of a keyframe is box k"][t["id"]] = position[t["id"]] if position[t["id"]] in options else "1"
        guesses["always box 1"][t["id"]] = "1"
        seen = json.dumps({k: v for k, v in t.items() if k not in ("id",)})
        named = re.search(r"person_(\d+)|box_numbers|instance_id", seen)
        guesses["box named in the URL or fields"][t["id"]] = (named.group(1) or "1") if named else "1"
    mapping = json.loads((ws / "labelstudio" / "verify_tasks.json").read_text())
    truth = {t["id"]: right_number(mapping[t["data"]["task_key"]]) for t in tasks}
    chances = [1 / sum(o["value"] != "none" for o in t["data"]["options"]) for t in tasks]
    chance = sum(chances) / len(chances)
    spread = math.sqrt(sum(p * (1 - p) for p in chances)) / len(chances)
    scores = {name: sum(g[tid] == truth[tid] for tid in truth) / len(truth) for name, g in guesses.items()}
    return {"scores": scores, "chance": chance, "bound": chance + 3 * spread + 0.05, "tasks": tasks}


def test_an_adversarial_verifier_does_no_better_than_chance(server, sample_workspace_template, chromium):
    """One server, one verifier who cheats: keys, URLs, task order, the pictures, private files.  Today's task
    values are blind; what one Label Studio Community server cannot hide (every member reads every project,
    descriptions included) is shown here too, and is why the verify stage can have its own server."""
    from refava.annotate.labelstudio import Client

    url, base = server
    ws = base / "ws-adversary"
    shutil.copytree(sample_workspace_template, ws)
    env = {"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(base)}
    out = refava("annotate", "push", "--stage", "describe", "--url", url, cwd=ws, env=env)
    describe_project = int(out.split("project ")[1].split(",")[0])
    api = Client(url, TOKEN)
    written = describe(api, describe_project, ws, clips=24, who=1)
    refava("annotate", "pull", "--url", url, cwd=ws)
    out = refava("annotate", "push", "--stage", "verify", "--url", url, cwd=ws, env=env)
    verify_project = int(out.split("project ")[1].split(",")[0])
    page = sign_up(chromium, url, TOKEN, "cheat@refava.local", "cheat-pass-1234")
    found = adversary(page, url, verify_project, ws)
    assert len(found["tasks"]) == len(written) >= 40
    for name, score in found["scores"].items():
        assert score <= found["bound"], (name, score, found["chance"])
    # the page the verifier works in names nothing either: the expression, numbers, an opaque picture
    task = found["tasks"][0]
    page.goto(f"{url}/projects/{verify_project}/data?task={task['id']}")
    page.locator(".lsf-choice__item").first.wait_for(timeout=60_000)
    html = page.content()
    assert task["data"]["expression"] in html
    assert not any(iid in html or iid.rsplit("___", 1)[0] in html for iid in written)
    # what one Community server cannot hide: the describe project and its texts are readable by every member
    leaked = page.request.get(f"{url}/api/tasks?project={describe_project}&page_size=5")
    assert leaked.status == 200 and leaked.json()["tasks"]


def test_two_servers_overlap_honeypots_and_a_lead_who_can_act(server, verify_server, sample_workspace_template,
                                                               sample_corpus, chromium, tmp_path):
    """The describe stage on one server, the verify stage on another with only the verifiers' accounts; two
    verifiers per expression; a gold file of honeypots; a describer who answers their own task; a verifier who
    fails the honeypots.  Five accounts: the lead, a describer, three verifiers."""
    from refava.annotate.labelstudio import Client

    url, base = server
    vurl, vbase = verify_server
    ws = base / "ws-two"
    shutil.copytree(sample_workspace_template, ws)
    truth = {t["instance_id"]: t for t in json.loads((sample_corpus / "annotations" / "sample_truth.json").read_text())}
    toml = (ws / "refava.toml").read_text()
    toml = toml.replace('url = "http://127.0.0.1:8080"', f'url = "{url}"')
    toml = toml.replace('[labelstudio.verify]\nurl = ""', f'[labelstudio.verify]\nurl = "{vurl}"')
    toml = toml.replace("verifiers_per_expression = 1", "verifiers_per_expression = 2")
    toml = toml.replace("honeypot_share = 0.1", "honeypot_share = 0.5").replace('gold = ""', 'gold = "gold.json"')
    (ws / "refava.toml").write_text(toml)
    env = {"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(base), "LABEL_STUDIO_VERIFY_API_KEY": VERIFY_TOKEN}
    api, vapi = Client(url, TOKEN), Client(vurl, VERIFY_TOKEN)

    # the describer joins the describe server; its projects show the guidelines with their tables as tables
    out = refava("annotate", "push", "--stage", "describe", cwd=ws, env=env)
    describe_project = int(out.split("project ")[1].split(",")[0])
    writer = sign_up(chromium, url, TOKEN, "describer@refava.local", "describer-pass-1234")
    writer.goto(f"{url}/projects/{describe_project}/data?labeling=1")
    table = writer.locator("table:has(th:text-is('category'))").first
    table.wait_for(timeout=60_000)
    assert table.is_visible() and table.locator("tr").count() == 6 and "|---|" not in writer.content()
    desc = user_id(url, TOKEN, "describer@refava.local")
    written = describe(api, describe_project, ws, clips=10, who=desc)
    gold_ids = sorted(i for i in truth if i not in written and len(truth[i]["expression"].split()) >= 3)[:6]
    (ws / "gold.json").write_text(json.dumps([{"instance_id": i, "expression": truth[i]["expression"]}
                                              for i in gold_ids]))
    refava("annotate", "pull", cwd=ws, env=env)

    out = refava("annotate", "push", "--stage", "verify", cwd=ws, env=env)
    verify_project = int(out.split("project ")[1].split(",")[0])
    assert f"{2 * len(written) + 6} tasks added ({2 * len(written)} expressions to verify, 6 honeypots" in out, out
    assert [p["title"] for p in (api.call("GET", "/api/projects")["results"])
            if p["id"] == verify_project] != ["RefAVA verify (ws-two)"]        # the verify project lives on vurl
    assert vapi.call("GET", f"/api/projects/{verify_project}")["title"] == "RefAVA verify (ws-two)"

    # verifiers join the verify server only; the describer also verifies others' work there
    pages = {who: sign_up(chromium, vurl, VERIFY_TOKEN, f"{who}@refava.local", f"{who}-pass-1234")
             for who in ("ver1", "ver2", "ver3", "describer")}
    ids = {who: user_id(vurl, VERIFY_TOKEN, f"{who}@refava.local") for who in pages}
    ver1 = pages["ver1"]
    # a verifier has no way to the descriptions: no account on the describe server (a separate browser context:
    # both servers are on 127.0.0.1, and cookies do not tell ports apart), none of it on this one
    elsewhere = chromium.new_page()
    elsewhere.goto(f"{url}/user/login/")
    elsewhere.fill("input[name=email]", "ver1@refava.local")
    elsewhere.fill("input[name=password]", "ver1-pass-1234")
    elsewhere.click("button[type=submit]")
    elsewhere.wait_for_load_state("networkidle")
    assert "/user/login" in elsewhere.url
    assert elsewhere.request.get(f"{url}/api/tasks?project={describe_project}").status in (401, 403)
    elsewhere.context.close()
    projects = ver1.request.get(f"{vurl}/api/projects").json()
    assert [p["title"] for p in projects.get("results", projects)] == ["RefAVA verify (ws-two)"]
    found = adversary(ver1, vurl, verify_project, ws)
    for name, score in found["scores"].items():
        assert score <= found["bound"], (name, score, found["chance"])

    # answers: ver1 takes slot w0, ver2 slot w1; X's w1 by its describer, Y's w1 wrong, Z's w1 by ver3, who
    # misses the gold honeypots
    mapping = json.loads((ws / "labelstudio" / "verify_tasks.json").read_text())
    tasks = {t["data"]["task_key"]: t["id"] for t in vapi.tasks(verify_project)}
    x, y, z = sorted(written)[:3]
    clicked = None
    gold_seen = 0
    for key, task_id in sorted(tasks.items(), key=lambda kv: kv[1]):
        entry = mapping[key]
        right = right_number(entry)
        wrong = next(n for n in entry["box_numbers"] if n != right)
        if entry["kind"] == "gold":
            gold_seen += 1
            answer(vapi, task_id, right if gold_seen <= 2 else wrong, ids["ver1"] if gold_seen <= 2 else ids["ver3"])
        elif entry["slot"] == "w0" and clicked is None:
            clicked = (task_id, entry)                                     # ver1 answers this one in Chromium
        elif entry["slot"] == "w0":
            answer(vapi, task_id, right, ids["ver1"])
        elif entry["instance_id"] == x:
            answer(vapi, task_id, right, ids["describer"])
        elif entry["instance_id"] == y:
            answer(vapi, task_id, wrong, ids["ver2"])
        elif entry["instance_id"] == z:
            answer(vapi, task_id, right, ids["ver3"])
        else:
            answer(vapi, task_id, right, ids["ver2"])
    task_id, entry = clicked
    ver1.goto(f"{vurl}/projects/{verify_project}/data?task={task_id}")
    choices = ver1.locator(".lsf-choice__item")
    choices.first.wait_for(timeout=60_000)
    close = ver1.get_by_label("Close modal")
    if close.count() and close.first.is_visible():
        close.first.click()
    options = [o["value"] for o in vapi.call("GET", f"/api/tasks/{task_id}")["data"]["options"]]
    choices.nth(options.index(right_number(entry))).click()
    ver1.get_by_role("button", name="Submit").first.click()
    ver1.wait_for_timeout(2500)
    submitted = vapi.call("GET", f"/api/tasks/{task_id}")["annotations"]
    assert [(a["completed_by"]["id"], a["result"][0]["value"]["choices"]) for a in submitted] == \
        [(ids["ver1"], [right_number(entry)])], submitted

    refava("annotate", "pull", cwd=ws, env=env)
    refava("annotate", "check", cwd=ws)
    status = {r["instance_id"]: r for r in pq.read_table(ws / "tables" / "annotation_status.parquet").to_pylist()}
    assert status[x]["status"] == "pending_verification"
    assert any(r.startswith("self_verified: describer@refava.local") for r in status[x]["reasons"])
    assert status[y]["status"] == "needs_revision" and "failed_verification" in status[y]["reasons"]
    assert status[z]["status"] == "pending_verification"
    assert any(r.startswith("untrusted_verifier: ver3@refava.local found 0.0 % of 4") for r in status[z]["reasons"])
    assert all(status[i]["status"] == "accepted" for i in written if i not in (x, y, z))
    out = refava("annotate", "status", cwd=ws)
    assert "ver3@refava.local 0.0 % of 4 (answers not counted)" in out and "ver1@refava.local 100.0 % of 2" in out
    assert "ver1@refava.local / ver2@refava.local: alpha" in out
    report = json.loads((ws / "reports" / "annotate-status.json").read_text())
    agreement = report["agreement"]["verifiers"]
    # every instance had two answers by someone other than its describer, but X (its describer took a slot)
    assert agreement["instances"] == len(written) - 1 and agreement["alpha"] is not None
    assert report["next"]["review_annotators"] == ["ver3@refava.local"] and y in report["next"]["revise"]
    lead = chromium.new_page()
    lead.goto((ws / "reports" / "annotation-lead.html").as_uri())
    row = lead.locator("tr").filter(has=lead.locator("td:text-is('ver3@refava.local')"))
    assert "0.0 % of 4 (not counted)" in row.inner_text()
    page = lead.content()
    assert "chose box" in page and "What to do next" in page and "Krippendorff's alpha 0." in page
    assert lead.locator("tr", has_text="ver1@refava.local / ver2@refava.local").count() == 1

    # the describer's answer did not take the verifier's place: the next push re-opens X (and Z) for others
    out = refava("annotate", "push", "--stage", "verify", cwd=ws, env=env)
    assert "4 tasks added (2 expressions to verify, 2 honeypots" in out, out
    mapping = json.loads((ws / "labelstudio" / "verify_tasks.json").read_text())
    for t in vapi.tasks(verify_project):
        entry = mapping[t["data"]["task_key"]]
        if not t.get("total_annotations") and entry["kind"] == "work":
            assert entry["instance_id"] in (x, z) and entry["slot"] == "w2"
            answer(vapi, t["id"], right_number(entry), ids["ver2"])
    refava("annotate", "pull", cwd=ws, env=env)
    refava("annotate", "check", cwd=ws)
    status = {r["instance_id"]: r for r in pq.read_table(ws / "tables" / "annotation_status.parquet").to_pylist()}
    assert status[x]["status"] == status[z]["status"] == "accepted"

    # the packaged dataset names the describer by a pseudonym, the one the workspace's secret gives
    from refava.annotate import blind

    refava("build-splits", cwd=ws)
    refava("package", "--no-progress", cwd=ws)
    names = set()
    for shard in (ws / "refava" / "data" / "annotations_only").glob("*.parquet"):
        for who in pq.read_table(shard, columns=["annotators"]).column("annotators").to_pylist():
            names.update(who)
    assert names == {blind.pseudonym(blind.secret(ws), "describer@refava.local")}
    for path in (ws / "refava").rglob("*"):
        assert not path.is_file() or b"@refava.local" not in path.read_bytes(), path

    # neither server tries to reach an outside error-reporting service
    for folder in (base / "data", vbase / "data"):
        assert "sentry" not in (folder / "server.log").read_text().lower()
        pid = (folder / "server.pid").read_text().strip()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"SENTRY_DSN=" in environ and b"FRONTEND_SENTRY_DSN=" in environ
    assert "sentry.io" not in ver1.request.get(f"{vurl}/user/login/").text()
