"""The sample corpus: real encoded movies, AVA-format annotations, a two-annotator Label Studio export."""
from __future__ import annotations

import json

from refava.ava import default_label_map, group_instances, load_ava_csv, load_file_list, load_label_map, load_proposals
from refava.download import load_checksums
from refava.fsutil import sha256_file
from refava.video import probe


def test_movies_are_real_files_in_mixed_containers(sample_corpus):
    infos = [probe(p) for p in sorted((sample_corpus / "movies").iterdir())]
    assert len(infos) == 8
    assert {i.filename.rsplit(".", 1)[1] for i in infos} == {"mp4", "mkv", "webm"}
    assert {i.codec for i in infos} == {"h264", "vp9"}
    names = load_file_list(sample_corpus / "annotations" / "ava_file_names_sample.txt")
    sums = load_checksums(sample_corpus / "annotations" / "movies.sha256")
    assert set(sums) == set(names.values())
    for name, digest in sums.items():
        assert sha256_file(sample_corpus / "movies" / name) == digest


def test_annotations_parse_and_cover_several_actions(sample_corpus):
    ann = sample_corpus / "annotations"
    labels = load_label_map(ann / "ava_action_list_v2.2.pbtxt")
    assert labels == default_label_map()
    rows = load_ava_csv(ann / "ava_sample_v2.2.csv", known_actions=labels.keys())
    instances = group_instances(rows)
    actions = {a for i in instances for a in i.action_ids}
    assert {12, 14, 11}.issubset(actions) and len(actions) >= 8
    per_clip = {}
    for inst in instances:
        per_clip[inst.clip_id] = per_clip.get(inst.clip_id, 0) + 1
    assert set(per_clip.values()) == {1, 2, 3, 4}
    props = load_proposals(ann / "ava_dense_proposals_sample.pkl")
    assert len(props) == len(per_clip)


def test_label_studio_exports_join_by_region_id(sample_corpus):
    ann = sample_corpus / "annotations"
    describe = json.loads((ann / "labelstudio_describe_export.json").read_text())
    verify = json.loads((ann / "labelstudio_verify_export.json").read_text())
    flaws = json.loads((ann / "sample_export_flaws.json").read_text())
    truth = {t["instance_id"]: t for t in json.loads((ann / "sample_truth.json").read_text())}
    assert {t["completed_by"] for task in describe for t in task["annotations"]} == {1, 2}
    texts = {}
    for task in describe:
        clip_id = task["data"]["clip_id"]
        for ann_ in task["annotations"]:
            for r in ann_["result"]:
                if r["from_name"] == "expression":
                    person = int(r["id"].removeprefix("person_"))
                    texts.setdefault(f"{clip_id}___{person}", []).append(r["value"]["text"][0])
    assert set(texts) == set(truth)
    mapping = json.loads((ann / "labelstudio_verify_tasks.json").read_text())
    # the verify tasks have the shape refava's push gives them: an opaque key resolved by the workspace's map
    assert {t["data"]["task_key"] for t in verify} == set(mapping)
    assert {e["instance_id"] for e in mapping.values()} == set(truth)
    assert all(set(t["data"]) == {"image", "expression", "task_key", "options"} for t in verify)
    assert all(flaws["flaws"][k] for k in ("action_word", "duplicate_in_clip", "failed_verification", "flagged_box",
                                          "describer_conflict"))
    action_iid = flaws["flaws"]["action_word"][0]
    assert any("walking" in t for t in texts[action_iid])
