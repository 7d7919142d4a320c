"""Annotation QA that cannot be gamed (issue 27), without a server: blind task values, slots that a wrong answerer
cannot block, consensus, honeypots, agreement, the lead's figures, Markdown guidelines, pseudonymous annotators.
The real-server and Chromium side is in test_annotation_qa_server.py."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from factories import make_instances_for_checks
from refava.annotate import blind
from refava.annotate.checks import Rules, check_instances
from refava.annotate.verifyplan import plan_verify

KEY = b"test-secret"
TEXTS = {0: "the man in a red coat on the left", 1: "the woman in a blue dress on the right",
         2: "the old man with glasses in the middle"}


def rows(*specs):
    """Annotation rows: (stage, instance, annotator, text, picked person, version[, task kind[, task id]])."""
    out = []
    for n, spec in enumerate(specs):
        stage, iid, who, text, picked, version = spec[:6]
        kind = spec[6] if len(spec) > 6 else ("work" if stage == "verify" else None)
        out.append({"annotation_id": f"a{n}-{iid}-{who}", "instance_id": iid, "clip_id": iid.rsplit("___", 1)[0],
                    "stage": stage, "annotator": who, "created_at": f"2026-11-0{version}T00:00:{n:02d}Z",
                    "lead_time_s": None, "text": text, "flags": [], "picked": None if picked is None else "1",
                    "picked_person_id": picked, "ls_project_id": 7 if stage == "verify" else None,
                    "ls_task_id": spec[7] if len(spec) > 7 else None, "ls_annotation_id": None, "source": "t",
                    "task_kind": kind, "version": version})
    return out


def described(clip="v___0002", people=(0, 1, 2), who="ann@a"):
    return [("describe", f"{clip}___{p}", who, TEXTS[p], None, 1) for p in people]


# --- blind values -----------------------------------------------------------------------------------------------

def test_nothing_a_verifier_sees_can_be_recomputed_without_the_secret(tmp_path, monkeypatch):
    """The old key was sha256(instance + text): inverted by trying every instance of the clip. Keys, image names,
    numbering and push order now come from the per-workspace secret."""
    monkeypatch.delenv(blind.SECRET_ENV, raising=False)
    key = blind.secret(tmp_path)
    assert len(key) == 64 and blind.secret(tmp_path) == key                     # created once, then read
    assert stat.S_IMODE((tmp_path / blind.SECRET_FILE).stat().st_mode) == 0o600
    assert blind.secret(tmp_path / "other") != key                              # per workspace
    iid, text = "v___0002___1", TEXTS[1]
    task = blind.task_key(key, iid, text, "w0")
    assert task != hashlib.sha256(f"{iid}\x1f{text}".encode()).hexdigest()[:len(task)]
    assert task != blind.task_key(key, iid, text, "w1") != blind.task_key(b"other", iid, text, "w1")
    assert "v___0002" not in blind.image_name(key, task)
    monkeypatch.setenv(blind.SECRET_ENV, "shared-team-secret")
    assert blind.secret(tmp_path) == b"shared-team-secret"


def test_box_numbers_and_push_order_carry_no_information_about_the_person():
    """Over many tasks, the shown number of the person meant is uniform, not the person id's rank; the push order
    is not the instance order."""
    from collections import Counter

    rank_hits, seen = 0, Counter()
    tasks = []
    for clip in range(400):
        people = [3, 7, 11]
        for person in people:
            task = blind.task_key(KEY, f"m___{clip:04d}___{person}", "text", "w0")
            numbers = blind.box_numbers(KEY, task, people)
            assert sorted(numbers.values()) == people and sorted(numbers) == ["1", "2", "3"]
            shown = next(n for n, p in numbers.items() if p == person)
            seen[shown] += 1
            rank_hits += shown == str(people.index(person) + 1)
            tasks.append(task)
    total = 1200
    assert abs(rank_hits / total - 1 / 3) < 0.05                                 # the old numbering: always 1.0
    assert all(abs(c / total - 1 / 3) < 0.05 for c in seen.values())
    order = blind.push_order(KEY, tasks)
    assert order != tasks and sorted(order) == sorted(tasks)
    positions = [order.index(t) for t in tasks[:300]]
    assert abs(sum(a < b for a, b in zip(positions, positions[1:])) / 299 - 0.5) < 0.1


# --- slots: a describer's answer never blocks the verifier ------------------------------------------------------

def server_task(task_id, key, answered=0):
    return {"id": task_id, "data": {"task_key": key}, "total_annotations": answered, "cancelled_annotations": 0}


def test_a_describers_answer_reopens_the_task_for_others():
    inst = make_instances_for_checks(["v___0002___0", "v___0002___1", "v___0002___2"])
    base = rows(*described())
    first = plan_verify(inst, base, [], set(), Rules(), KEY, mapping={})
    assert first.work == 3 and first.honeypots == 0 and first.open == 0
    keys = {e["instance_id"]: k for k, e in first.tasks}
    pushed = dict(first.tasks)                                      # the workspace's map after that push
    # pushed, nobody answered: nothing new
    server = [server_task(n, k) for n, k in enumerate(keys.values(), start=1)]
    again = plan_verify(inst, base, server, set(), Rules(), KEY, mapping=pushed)
    assert again.tasks == [] and again.open == 3
    # the describer answers their own task of person 0 (pulled): that slot does not count, a new one is added
    server[0]["total_annotations"] = 1
    own = base + rows(("verify", "v___0002___0", "ann@a", TEXTS[0], 0, 2, "work", 1))
    status = check_instances(inst, own)[0]
    assert status["status"] == "pending_verification" and status["reasons"][0].startswith("self_verified")
    reopened = plan_verify(inst, own, server, {1}, Rules(), KEY, mapping=pushed)
    assert [e["instance_id"] for _, e in reopened.tasks] == ["v___0002___0"]
    (task, entry), = reopened.tasks
    assert entry["slot"] == "w1" and task not in keys.values()
    # answered on the server but not pulled yet: waiting for the pull, not a new task
    waiting = plan_verify(inst, base, server, set(), Rules(), KEY, mapping=pushed)
    assert waiting.tasks == [] and waiting.unpulled == 1
    # the other annotator answers the new slot: accepted
    done = own + rows(("verify", "v___0002___0", "bob@b", TEXTS[0], 0, 3, "work", 4))
    assert check_instances(inst, done)[0]["status"] == "accepted"


# --- overlap and consensus --------------------------------------------------------------------------------------

def test_two_verifiers_per_expression_and_the_consensus_rules():
    inst = make_instances_for_checks(["v___0002___0", "v___0002___1", "v___0002___2"])
    two = Rules(verifiers=2)
    base = rows(*described())
    plan = plan_verify(inst, base, [], set(), two, KEY, mapping={})
    assert plan.work == 6 and {e["slot"] for _, e in plan.tasks} == {"w0", "w1"}
    one = base + rows(("verify", "v___0002___0", "bob@b", TEXTS[0], 0, 2))
    status = check_instances(inst, one, two)[0]
    assert status["status"] == "pending_verification" and status["reasons"] == ["awaiting_verifiers: 1 of 2 answers"]
    both = one + rows(("verify", "v___0002___0", "cat@c", TEXTS[0], 0, 2))
    assert check_instances(inst, both, two)[0]["status"] == "accepted"
    split = one + rows(("verify", "v___0002___0", "cat@c", TEXTS[0], 1, 2))
    assert check_instances(inst, split, two)[0]["reasons"] == ["failed_verification"]
    # majority of three: two finders carry it, two misses sink it
    three = Rules(verifiers=3, consensus="majority")
    assert check_instances(inst, split, three)[0]["status"] == "pending_verification"
    assert check_instances(inst, split + rows(("verify", "v___0002___0", "dan@d", TEXTS[0], 0, 3)),
                           three)[0]["status"] == "accepted"
    assert check_instances(inst, split + rows(("verify", "v___0002___0", "dan@d", TEXTS[0], None, 3)),
                           three)[0]["verified"] is False
    # one verifier answering twice (two slots) is one answer
    twice = one + rows(("verify", "v___0002___0", "bob@b", TEXTS[0], 0, 3))
    assert check_instances(inst, twice, two)[0]["status"] == "pending_verification"


def test_krippendorff_alpha_equals_the_reference_implementation():
    krippendorff = pytest.importorskip("krippendorff")
    import numpy as np

    from refava.annotate.status import krippendorff_alpha

    rng = np.random.default_rng(0)
    for _ in range(20):
        coders, items = rng.integers(2, 5), rng.integers(5, 40)
        data = rng.integers(0, 4, size=(coders, items)).astype(float)
        data[rng.random(data.shape) < 0.3] = np.nan
        agree = rng.random(items) < 0.6                    # some items where every coder agrees
        data[:, agree] = np.where(np.isnan(data[:, agree]), np.nan, data[0, agree])
        units = [[v for v in data[:, i] if not np.isnan(v)] for i in range(items)]
        if sum(len(u) >= 2 for u in units) < 2 or len({v for u in units if len(u) >= 2 for v in u}) < 2:
            continue
        ours = krippendorff_alpha(units)
        theirs = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
        assert ours == pytest.approx(theirs, abs=1e-9)


# --- honeypots ----------------------------------------------------------------------------------------------------

def test_honeypots_are_mixed_in_and_a_verifier_below_the_threshold_stops_counting():
    people = ["v___0002___0", "v___0002___1", "v___0002___2", "w___0005___0", "w___0005___1"]
    inst = make_instances_for_checks(people)
    rules = Rules(honeypot_min_answers=2, honeypot_min_accuracy=0.8)
    # v's three people: found by two verifiers each (known answers); w's two: described, not verified
    base = rows(*described(), ("describe", "w___0005___0", "ann@a", "the boy in a yellow shirt in front", None, 1),
                ("describe", "w___0005___1", "ann@a", "the girl with long hair at the back", None, 1),
                *[("verify", f"v___0002___{p}", who, TEXTS[p], p, 2) for p in (0, 1, 2) for who in ("bob@b", "cat@c")])
    plan = plan_verify(make_instances_for_checks(people), base, [], set(), rules, KEY, mapping={}, share=0.5)
    assert plan.work == 2 and plan.honeypots == 2 and plan.honeypot_candidates == 3
    honey = [e for _, e in plan.tasks if e["kind"] == "honeypot"]
    assert {e["instance_id"][:1] for e in honey} == {"v"}
    assert all(set(e) == {"instance_id", "clip_id", "text", "slot", "kind", "box_numbers", "image"}
               for _, e in plan.tasks)                                    # the same shape as every other task
    # gold answers are honeypots too
    gold = plan_verify(inst, base, [], set(), rules, KEY, mapping={}, share=0.5, gold={"w___0005___1": "the girl at the back"})
    assert gold.honeypot_candidates == 4
    # dan fails two honeypots: his work answers stop counting and the instance goes back to the queue
    sloppy = base + rows(("verify", "v___0002___0", "dan@d", TEXTS[0], 1, 3, "honeypot"),
                         ("verify", "v___0002___1", "dan@d", TEXTS[1], 2, 3, "honeypot"),
                         ("verify", "w___0005___0", "dan@d", "the boy in a yellow shirt in front", 0, 3, "work", 9))
    status = {r["instance_id"]: r for r in check_instances(inst, sloppy, rules)}
    assert status["w___0005___0"]["status"] == "pending_verification"
    assert status["w___0005___0"]["reasons"] == ["untrusted_verifier: dan@d found 0.0 % of 2 honeypots"]
    assert status["v___0002___0"]["status"] == "accepted"                   # a honeypot miss is the verifier's
    again = plan_verify(inst, sloppy, [server_task(9, "k9", answered=1)], {9}, rules, KEY, mapping={})
    assert "w___0005___0" in {e["instance_id"] for _, e in again.tasks if e["kind"] == "work"}
    # bob answers a honeypot he helped establish: not scored (the answer leans on his own work); eve is scored
    from refava.annotate.checks import honeypot_scores

    scored = honeypot_scores(sloppy + rows(("verify", "v___0002___2", "bob@b", TEXTS[2], 2, 4, "honeypot"),
                                           ("verify", "v___0002___2", "eve@e", TEXTS[2], 2, 4, "honeypot"),
                                           ("verify", "w___0005___1", "bob@b", "the girl at the back", 1, 4, "gold")))
    assert "eve@e" in scored and scored["bob@b"] == {"answers": 1, "correct": 1, "accuracy": 1.0}
    # nor is the describer scored on a honeypot of their own expression
    assert "ann@a" not in honeypot_scores(sloppy + rows(("verify", "v___0002___2", "ann@a", TEXTS[2], 2, 4,
                                                          "honeypot")))


# --- the lead's report ------------------------------------------------------------------------------------------

def test_the_report_keeps_one_decimal_shows_self_verifications_apart_and_names_the_box_clicked(tmp_path):
    from refava.annotate.status import annotation_status, failed_verifications, format_status

    people = [f"v___{t:04d}___{p}" for t in range(2, 81) for p in (0, 1, 2)][:237]
    inst = make_instances_for_checks(people)
    specs = []
    for iid in people:
        p = int(iid[-1])
        specs.append(("describe", iid, "ann@a", f"{TEXTS[p]} number {iid[3:7]}", None, 1))
        specs.append(("verify", iid, "bob@b", f"{TEXTS[p]} number {iid[3:7]}", p if iid != people[5] else 0, 2))
    specs.append(("verify", people[0], "ann@a", f"{TEXTS[0]} number {people[0][3:7]}", 0, 2))
    data = rows(*specs)
    next(r for r in data if r["stage"] == "verify" and r["instance_id"] == people[5])["picked"] = "3"   # bob's click
    status = check_instances(inst, data)
    report = annotation_status(inst, data, status)
    text = format_status(report)
    assert "verification: 99.6 % of 237 counted answers" in text and "100 %" not in text
    assert report["annotators"]["ann@a"]["self_verified"] == 1 and report["annotators"]["ann@a"]["verify"] == 0
    assert "self_verified" not in report["annotators"]["ann@a"]["reasons"]
    assert report["annotators"]["ann@a"]["reasons"] == {"failed_verification": 1}
    failure, = failed_verifications(data, status)
    assert (failure["picked"], failure["picked_person_id"], failure["verifier"]) == ("3", 0, "bob@b")
    assert people[5] in report["next"]["revise"]


def test_the_leads_page_says_which_box_was_clicked(sample_workspace_template, tmp_path):
    from refava.annotate.status import annotation_status, failed_verifications, lead_report_html
    from refava.records import Instances
    from refava.workspace import Workspace

    ws = Workspace.load(sample_workspace_template)
    inst = list(Instances.from_parquet(ws.table("instances")))
    clip = next(c for c in sorted({i.clip_id for i in inst}) if sum(i.clip_id == c for i in inst) >= 2)
    a, b = sorted((i for i in inst if i.clip_id == clip), key=lambda i: i.person_id)[:2]
    data = rows(("describe", a.instance_id, "ann@a", TEXTS[0], None, 1),
                ("verify", a.instance_id, "bob@b", TEXTS[0], b.person_id, 2))
    data[1]["picked"] = "3"
    status = check_instances(inst, data)
    page = lead_report_html(ws, annotation_status(inst, data, status), failed_verifications(data, status), inst)
    assert f"chose box 3 (person {b.person_id})" in page
    assert "What to do next" in page and "self-verifications (not counted)" in page


# --- guidelines -------------------------------------------------------------------------------------------------

def test_guidelines_are_rendered_by_a_markdown_library():
    from refava.annotate.labelstudio import guidelines_html

    page = guidelines_html()
    assert "<table>" in page and "<th>category</th>" in page and "<td>the man who is talking</td>" in page
    assert "<strong>bad</strong>" in page and "<em>recognise</em>" in page and "<ol>" in page
    assert "|---|" not in page and "**" not in page
    # a paragraph wrapped in the source is one paragraph, not one per line
    assert re.search(r"<p>You write <strong>referring expressions</strong>: short phrases that pick out exactly one "
                     r"person in a movie keyframe, so that\s+someone who sees only", page)


# --- workspace settings -----------------------------------------------------------------------------------------

def test_the_verify_server_and_the_rules_live_in_refava_toml(tmp_path):
    from refava.errors import ConfigError
    from refava.workspace import Workspace, init_workspace

    ws = init_workspace(tmp_path / "ws")
    ws.config["labelstudio.verify"]["url"] = "http://127.0.0.1:8090"
    ws.config["annotation"]["verifiers_per_expression"] = 2
    ws.save()
    text = (tmp_path / "ws" / "refava.toml").read_text()
    assert "[labelstudio.verify]" in text and "LABEL_STUDIO_VERIFY_API_KEY" in text
    again = Workspace.load(tmp_path / "ws")
    assert again.config["labelstudio.verify"]["url"] == "http://127.0.0.1:8090"
    assert Rules.from_config(again.config).verifiers == 2
    (tmp_path / "ws" / "refava.toml").write_text(text.replace('consensus = "unanimous"', 'consensus = "most"'))
    with pytest.raises(ConfigError, match="consensus = 'most': expected one of unanimous, majority"):
        Workspace.load(tmp_path / "ws")


def test_a_verify_map_from_another_workspace_is_refused_whole(sample_workspace_template, tmp_path, sample_corpus):
    from refava.annotate.labelstudio import LabelStudioError, add_verify_map, load_verify_map
    from refava.workspace import Workspace

    root = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, root)
    ws = Workspace.load(root)
    sample_map = sample_corpus / "annotations" / "labelstudio_verify_tasks.json"
    assert add_verify_map(ws, sample_map) == len(json.loads(sample_map.read_text()))
    assert add_verify_map(ws, sample_map) == 0
    other = json.loads(sample_map.read_text())
    first = next(iter(other))
    other[first] = {**other[first], "box_numbers": {"1": 99}}
    (tmp_path / "other.json").write_text(json.dumps(other))
    before = (root / "labelstudio" / "verify_tasks.json").read_bytes()
    with pytest.raises(LabelStudioError, match="another workspace's map"):
        add_verify_map(ws, tmp_path / "other.json")
    assert (root / "labelstudio" / "verify_tasks.json").read_bytes() == before and load_verify_map(ws)


# --- personal data ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_packaged_dataset_names_annotators_by_pseudonym_unless_asked(sample_workspace_template, sample_corpus,
                                                                          tmp_path):
    """Answers pulled from Label Studio carry account emails; the packaged dataset carries a stable pseudonym per
    annotator (salted with the workspace's secret) and says so in the card; --annotator-emails keeps the emails."""
    import pyarrow.parquet as pq

    from refava.sample_annotations import ANNOTATORS

    root = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, root)
    ann = sample_corpus / "annotations"
    export = json.loads((ann / "labelstudio_describe_export.json").read_text())
    for task in export:                              # as a pull records them: the accounts' emails
        for a in task["annotations"]:
            a["completed_by"] = {"id": a["completed_by"], "email": ANNOTATORS[a["completed_by"]]}
    (tmp_path / "describe.json").write_text(json.dumps(export))
    env = {**os.environ}
    env.pop(blind.SECRET_ENV, None)

    def refava(*args):
        proc = subprocess.run([sys.executable, "-m", "refava", *map(str, args)], cwd=root, capture_output=True,
                              text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    for args in (["annotate", "import", tmp_path / "describe.json"],
                 ["annotate", "import", ann / "labelstudio_verify_export.json", "--verify-map",
                  ann / "labelstudio_verify_tasks.json"], ["annotate", "check"], ["build-splits"],
                 ["package", "--no-progress", "--out", tmp_path / "pseudo" / "refava"],
                 ["package", "--no-progress", "--annotator-emails", "--out", tmp_path / "emails" / "refava"]):
        refava(*args)
    key = (root / blind.SECRET_FILE).read_bytes().strip()
    names = set()
    for shard in sorted((tmp_path / "pseudo" / "refava" / "data" / "annotations_only").glob("*.parquet")):
        for who in pq.read_table(shard, columns=["annotators"]).column("annotators").to_pylist():
            names.update(who)
    assert names == {blind.pseudonym(key, e) for e in ANNOTATORS.values() if e != ANNOTATORS[3]}
    for path in (tmp_path / "pseudo").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"@refava.example" not in data and key not in data, path
    card = (tmp_path / "pseudo" / "refava" / "README.md").read_text()
    assert "pseudonymous ids" in card and "no email" in card
    emails = set()
    for shard in sorted((tmp_path / "emails" / "refava" / "data" / "annotations_only").glob("*.parquet")):
        for who in pq.read_table(shard, columns=["annotators"]).column("annotators").to_pylist():
            emails.update(who)
    assert emails == {ANNOTATORS[1], ANNOTATORS[2]}
    assert "personal data" in (tmp_path / "emails" / "refava" / "README.md").read_text()


def test_a_separate_verify_server_needs_its_own_token(sample_workspace_template, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, root)
    text = (root / "refava.toml").read_text()
    (root / "refava.toml").write_text(text.replace('[labelstudio.verify]\nurl = ""',
                                                   '[labelstudio.verify]\nurl = "http://127.0.0.1:9"'))
    env = {k: v for k, v in os.environ.items() if k != "LABEL_STUDIO_VERIFY_API_KEY"}
    env["LABEL_STUDIO_API_KEY"] = "0" * 40
    proc = subprocess.run([sys.executable, "-m", "refava", "annotate", "push", "--stage", "verify"], cwd=root,
                          capture_output=True, text=True, env=env)
    assert proc.returncode and "LABEL_STUDIO_VERIFY_API_KEY" in proc.stderr and "http://127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr and "0" * 40 not in proc.stderr


def test_a_broken_gold_file_is_refused_naming_the_file_and_the_entry(sample_workspace_template, tmp_path):
    from refava.annotate.labelstudio import LabelStudioError, load_gold
    from refava.records import Instances
    from refava.workspace import Workspace

    root = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, root)
    ws = Workspace.load(root)
    ws.config["annotation"]["gold"] = "gold.json"
    iid = next(iter(Instances.from_parquet(ws.table("instances")))).instance_id
    for content, found in ((json.dumps([{"instance_id": iid, "expression": "the man in red"},
                                        {"instance_id": "nobody___0902___7", "expression": "x"}]), "entry 1"),
                           ('{"not": "a list"}', "entry 0"), ("[{", "gold.json")):
        (root / "gold.json").write_text(content)
        with pytest.raises(LabelStudioError, match=found) as caught:
            load_gold(ws)
        assert "gold.json" in str(caught.value) and "Traceback" not in str(caught.value)
    (root / "gold.json").write_text(json.dumps([{"instance_id": iid, "expression": "the man in red"}]))
    assert load_gold(ws) == {iid: "the man in red"}
