"""Annotation import, checks and status on the sample corpus's two-annotator export, and on bad exports."""
from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from refava.annotate.checks import action_words, check_instances, contradiction, find_action_words, normalise
from refava.annotate.convert import ls_task_to_annotations
from refava.annotate.io import import_export_file, load_label_studio_export, load_ravar_release, read_annotations
from refava.errors import AnnotationFormatError
from refava.records import Instances


@pytest.fixture
def ws(sample_workspace_template, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, root)
    return root


def run(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_check_and_status_find_exactly_the_planted_flaws(ws, sample_corpus):
    ann = sample_corpus / "annotations"
    out = run("annotate", "import", str(ann / "labelstudio_describe_export.json"), cwd=ws)
    assert "315 new" in out
    run("annotate", "import", str(ann / "labelstudio_verify_export.json"), "--verify-map", str(ann / "labelstudio_verify_tasks.json"), cwd=ws)
    again = run("annotate", "import", str(ann / "labelstudio_describe_export.json"), cwd=ws)
    assert "0 new" in again and "315 already stored" in again and "nothing new" in again
    verify_tasks = len(json.loads((ann / "labelstudio_verify_export.json").read_text()))
    assert len(read_annotations(ws / "tables" / "annotations.parquet")) == 315 + verify_tasks  # no duplicates
    run("annotate", "check", cwd=ws)
    import pyarrow.parquet as pq

    status = {r["instance_id"]: r for r in pq.read_table(ws / "tables" / "annotation_status.parquet").to_pylist()}
    flaws = json.loads((ann / "sample_export_flaws.json").read_text())["flaws"]
    bad = {iid: r for iid, r in status.items() if r["status"] != "accepted"}
    assert status[flaws["action_word"][0]]["reasons"] == ["action_word: walking"]
    dup = flaws["duplicate_in_clip"][0]
    assert status[dup]["reasons"][0].startswith("duplicate_in_clip")
    assert status[flaws["failed_verification"][0]]["reasons"] == ["failed_verification"]
    assert status[flaws["flagged_box"][0]]["reasons"] == ["flagged: box_wrong"]
    assert status[flaws["describer_conflict"][0]]["status"] == "conflict"
    planted = {v[0] for v in flaws.values()}
    # the duplicate's twin is the only other instance that is not accepted
    assert set(bad) - planted == {r for r in bad if "duplicate_in_clip" in bad[r]["reasons"][0]} - planted
    assert len(bad) == len(planted) + 1
    report = json.loads(run("annotate", "status", "--json", cwd=ws))
    assert report["progress"]["describe"]["done"] == len(status)
    assert report["verification_accuracy"] == pytest.approx((verify_tasks - 1) / verify_tasks)
    assert report["verifications"]["counted"] == verify_tasks and report["verifications"]["self_verified"] == 0
    assert set(report["annotators"]) == {"ls-user-1", "ls-user-2", "ls-user-3"}
    # two verifiers answered the even person ids: their agreement is measured (the failed one is odd or not)
    pairs = report["agreement"]["verifiers"]["pairs_of_verifiers"]
    assert pairs["ls-user-2 / ls-user-3"]["instances"] == verify_tasks - len(status)
    assert (ws / "reports" / "annotate-status.json").exists()
    splits = run("build-splits", cwd=ws)
    assert f"over {len(status) - len(bad)} accepted instances" in splits


def test_edited_answers_become_a_new_version(ws, sample_corpus, tmp_path):
    export = json.loads((sample_corpus / "annotations" / "labelstudio_describe_export.json").read_text())
    table = ws / "tables" / "annotations.parquet"
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    first = import_export_file(path, table)
    result = export[0]["annotations"][0]["result"]
    edit = next(r for r in result if r["from_name"] == "expression")
    edit["value"]["text"] = ["the person with a green scarf on the left"]
    path.write_text(json.dumps(export))
    second = import_export_file(path, table)
    assert (first.added, second.added, second.updated) == (315, 0, 1)
    rows = read_annotations(table)
    assert len(rows) == 316 and max(r["version"] for r in rows) == 2


def test_truncated_and_min_exports_are_refused_and_nothing_is_lost(ws, sample_corpus, tmp_path):
    table = ws / "tables" / "annotations.parquet"
    import_export_file(sample_corpus / "annotations" / "labelstudio_describe_export.json", table)
    before = table.read_bytes()
    text = (sample_corpus / "annotations" / "labelstudio_describe_export.json").read_text()
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(AnnotationFormatError, match="truncated"):
        import_export_file(truncated, table)
    minimal = tmp_path / "min.json"
    minimal.write_text(json.dumps([{"image": "x.jpg", "expression": "the man"}]))
    with pytest.raises(AnnotationFormatError, match="JSON_MIN"):
        load_label_studio_export(minimal)
    assert table.read_bytes() == before


def test_unknown_region_ids_are_counted_not_imported():
    task = {"id": 7, "project": 1, "data": {"clip_id": "vid___0902"}, "annotations": [{
        "id": 1, "completed_by": 1, "created_at": "t", "result": [
            {"id": "person_0", "from_name": "expression", "type": "textarea", "value": {"text": ["the man in red"]}},
            {"id": "Xy7_region", "from_name": "expression", "type": "textarea", "value": {"text": ["a woman"]}},
            {"id": "person_5", "from_name": "expression", "type": "textarea", "value": {"text": ["a boy in blue"]}}]}]}
    out = ls_task_to_annotations(task, "describe", source="e.json", known_instances={"vid___0902___0"})
    assert [r["instance_id"] for r in out.rows] == ["vid___0902___0"]
    assert sorted(p.id for p in out.problems) == ["Xy7_region", "vid___0902___5"]
    assert all(p.kind == "unknown_region" and "e.json task 7" in p.where for p in out.problems)


def test_ravar_release_is_joined_by_key_not_order(tmp_path, sample_workspace_template):
    instances = list(Instances.from_parquet(sample_workspace_template / "tables" / "instances.parquet"))[:3]
    keys = [i.instance_id for i in instances]
    boxes = {k: np.array(i.box_xyxy) for k, i in zip(keys, instances)}
    labels = {k: np.eye(80)[i.action_ids[0] - 1] for k, i in zip(reversed(keys), reversed(instances))}
    texts = {k: f"text for {k}" for k in sorted(keys, reverse=True)}
    for name, obj in (("boxes", boxes), ("labels", labels), ("texts", texts)):
        (tmp_path / f"val_set_{name}.pkl").write_bytes(pickle.dumps(obj))
    release = load_ravar_release(tmp_path, "val")
    for inst in instances:
        rec = release[inst.instance_id]
        assert rec["text"] == f"text for {inst.instance_id}"
        assert rec["actions"] == [inst.action_ids[0]]
        assert rec["box"] == pytest.approx(list(inst.box_xyxy))


def test_ravar_release_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("true",))

    for name in ("boxes", "labels", "texts"):
        (tmp_path / f"test_set_{name}.pkl").write_bytes(pickle.dumps({"v___0902___1": Evil()}))
    with pytest.raises(AnnotationFormatError, match="refusing to load global"):
        load_ravar_release(tmp_path, "test")


@pytest.mark.parametrize("text, words", [
    ("the man who is talking", ["talking"]),
    ("the woman sitting on the left", ["sitting"]),
    ("a girl who runs to the door", ["runs"]),
    ("the man holding a cup", ["holding"]),
    ("the woman in a red coat on the right", []),
    ("the woman in a white dress with a watch", []),
    ("the man with a bow tie close to the door", []),
    ("the old man with a bag in his hand", []),
])
def test_action_words(text, words):
    assert find_action_words(text) == words


def test_action_vocabulary_covers_every_ava_action():
    from refava.ava import default_label_map

    from refava.annotate.checks import _inflections, _verbs_from_name

    vocab = action_words()
    for cls in default_label_map().values():
        for verb in _verbs_from_name(cls.name):
            assert _inflections(verb) & vocab, cls.name  # at least its verb forms are caught
    assert {"crawl", "sit", "walking", "sat"} <= vocab


def test_contradictions_and_normalisation():
    assert contradiction("the man on the left", "the woman on the left") == "gender differs"
    assert contradiction("the man on the left", "the man on the right") == "'left' vs 'right'"
    assert contradiction("the man in red", "a man wearing red") is None
    assert normalise("The  Man, in RED!") == "man in red"


def test_statuses_without_verification_are_pending():
    from refava.records import Instance

    inst = Instance("v___0902___0", "v___0902", "v", 902, 0, (0.1, 0.1, 0.5, 0.9), (12,), "x")
    row = {"annotation_id": "a", "instance_id": inst.instance_id, "clip_id": inst.clip_id, "stage": "describe",
           "annotator": "u1", "created_at": "t", "lead_time_s": None, "text": "the man in a red shirt",
           "flags": [], "picked": None, "picked_person_id": None, "version": 1}
    assert check_instances([inst], [row])[0]["status"] == "pending_verification"
    assert check_instances([inst], [])[0]["status"] == "missing"
    short = {**row, "text": "a man"}
    assert check_instances([inst], [short])[0]["reasons"] == ["too_short: 2 words (at least 3)"]


def _rows(*specs):
    """Annotation rows: (stage, instance, annotator, text, picked person, version)."""
    out = []
    for n, (stage, iid, who, text, picked, version) in enumerate(specs):
        out.append({"annotation_id": f"a{n}", "instance_id": iid, "clip_id": iid.rsplit("___", 1)[0], "stage": stage,
                    "annotator": who, "created_at": f"2026-11-0{version}T00:00:0{n}Z", "lead_time_s": None,
                    "text": text, "flags": [], "picked": None if picked is None else "1",
                    "picked_person_id": picked, "ls_project_id": None, "ls_task_id": None, "ls_annotation_id": None,
                    "source": "t", "version": version})
    return out


def test_a_rewritten_expression_is_not_accepted_until_verified_again():
    from factories import make_instances_for_checks
    from refava.annotate.checks import check_instances

    inst = make_instances_for_checks(["v___0002___0", "v___0002___1"])
    first = _rows(("describe", "v___0002___0", "ann@a", "the man in a red coat on the left", None, 1),
                  ("describe", "v___0002___1", "ann@a", "the woman in a blue dress on the right", None, 1),
                  ("verify", "v___0002___0", "bob@b", "the man in a red coat on the left", 0, 1))
    status = {r["instance_id"]: r for r in check_instances(inst, first)}
    assert status["v___0002___0"]["status"] == "accepted"
    rewritten = first + _rows(("describe", "v___0002___0", "ann@a", "the tall man in a red coat on the left", None, 2))
    status = {r["instance_id"]: r for r in check_instances(inst, rewritten)}
    assert status["v___0002___0"]["status"] == "pending_verification"
    assert any(r.startswith("stale_verification") for r in status["v___0002___0"]["reasons"])
    again = rewritten + _rows(("verify", "v___0002___0", "bob@b", "the tall man in a red coat on the left", 0, 3))
    assert {r["instance_id"]: r for r in check_instances(inst, again)}["v___0002___0"]["status"] == "accepted"


def test_a_describers_own_verification_does_not_count():
    from factories import make_instances_for_checks
    from refava.annotate.checks import check_instances

    inst = make_instances_for_checks(["v___0002___0"])
    rows = _rows(("describe", "v___0002___0", "ann@a", "the man in a red coat on the left", None, 1),
                 ("verify", "v___0002___0", "ann@a", "the man in a red coat on the left", 0, 1))
    status = check_instances(inst, rows)[0]
    assert status["status"] == "pending_verification" and status["verified"] is None
    assert any(r.startswith("self_verified: ann@a") for r in status["reasons"])
    rows += _rows(("verify", "v___0002___0", "cat@c", "the man in a red coat on the left", 0, 2))
    assert check_instances(inst, rows)[0]["status"] == "accepted"


def test_annotators_are_their_emails_when_the_server_names_them():
    from refava.annotate.convert import annotator_of, ls_task_to_annotations

    assert annotator_of({"id": 1, "email": "ann@lab.org"}) == "ann@lab.org"
    assert annotator_of(1, {1: "ann@lab.org"}) == "ann@lab.org"
    assert annotator_of(1) == "ls-user-1"
    task = {"id": 3, "data": {"clip_id": "v___0002"}, "annotations": [{"id": 9, "completed_by": 1, "result": [
        {"id": "person_0", "from_name": "expression", "value": {"text": ["the man on the left"]}}]}]}
    one = ls_task_to_annotations(task, "describe", users={1: "ann@server-one.org"}).rows[0]
    other = ls_task_to_annotations(task, "describe", users={1: "zoe@server-two.org"}).rows[0]
    assert one["annotator"] != other["annotator"]                 # user 1 of two servers: two people


def test_the_leads_page_draws_each_failed_verification_and_counts_per_annotator(ws, sample_corpus):
    import base64
    import re

    import cv2
    import numpy as np
    import pyarrow.parquet as pq

    ann = sample_corpus / "annotations"
    for args in (["annotate", "import", str(ann / "labelstudio_describe_export.json")],
                 ["annotate", "import", str(ann / "labelstudio_verify_export.json"), "--verify-map", str(ann / "labelstudio_verify_tasks.json")], ["annotate", "check"]):
        run(*args, cwd=ws)
    out = run("annotate", "status", cwd=ws)
    report = json.loads((ws / "reports" / "annotate-status.json").read_text())
    page = (ws / "reports" / "annotation-lead.html").read_text()
    assert str(ws / "reports" / "annotation-lead.html") in out
    rows = pq.read_table(ws / "tables" / "annotations.parquet").to_pylist()
    status = pq.read_table(ws / "tables" / "annotation_status.parquet").to_pylist()
    from refava.annotate.status import failed_verifications

    failures = failed_verifications(rows, status)
    assert failures and f"Failed verifications ({len(failures)})" in page
    images = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(images) == len(failures)
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(images[0]), np.uint8), cv2.IMREAD_COLOR)
    green = (picture[:, :, 1] > 180) & (picture[:, :, 0] < 60) & (picture[:, :, 2] < 60)
    assert green.sum() > 50                                               # the person meant is drawn
    for name, a in report["annotators"].items():
        assert name in page and "found_by_others" in a and "reasons" in a
    assert any(a["described_verified"] for a in report["annotators"].values())
