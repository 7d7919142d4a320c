"""AVA readers on the real files in tests/data/ava (see PROVENANCE.md) and on bad inputs."""
from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest

from refava.ava import (default_label_map, group_instances, load_ava_csv, load_ava_results_csv,
                        load_excluded_timestamps, load_file_list, load_label_map, load_proposals,
                        save_label_map_pbtxt)
from refava.errors import AnnotationFormatError
from refava.records import instance_id_of
from refava.validate import ProblemLog


def test_val_first400_instance_count_equals_distinct_triples(ava_data):
    path = ava_data / "ava_val_v2.1_first400rows.csv"
    with open(path) as fh:
        raw = list(csv.reader(fh))
    assert len(raw) == 400
    triples = {(r[0], int(r[1]), int(r[7])) for r in raw}
    log = ProblemLog()
    rows = load_ava_csv(path, known_actions=default_label_map().keys(), problems=log)
    instances = group_instances(rows, source=path.name)
    assert not log, log.summary_lines()
    assert len(rows) == 400
    assert len(instances) == len(triples)
    assert {(i.video_id, i.timestamp, i.person_id) for i in instances} == triples
    first = instances[0]
    assert first.instance_id == "1j20qq1JyX4___0902___0"
    assert first.box_xyxy == (0.444, 0.054, 0.992, 0.990)
    assert first.action_ids == (12, 17, 79)  # three rows of one person become one record


def test_every_action_of_a_person_is_kept_and_sorted(ava_data):
    rows = load_ava_csv(ava_data / "ava_val_v2.1_first400rows.csv")
    by_key = {}
    for r in rows:
        by_key.setdefault(instance_id_of(r.video_id, r.timestamp, r.person_id), set()).add(r.action_id)
    for inst in group_instances(rows):
        assert list(inst.action_ids) == sorted(by_key[inst.instance_id])


def test_mmaction2_sample_csv_and_exclusions(ava_data):
    d = ava_data / "mmaction2_sample"
    rows = load_ava_csv(d / "ava_sample.csv")
    excluded = load_excluded_timestamps(d / "ava_excluded_timestamps_sample.csv")
    assert excluded == {("0f39OWEqJ24", 903), ("_-Z6wFjXtGQ", 902)}
    counter = {}
    kept = group_instances(rows, excluded=excluded, excluded_counter=counter)
    assert counter["rows"] > 0
    assert all((i.video_id, i.timestamp) not in excluded for i in kept)


def test_label_map_three_forms(ava_data, tmp_path):
    from_csv = load_label_map(ava_data / "ava_action_list_v2.0.csv")
    assert len(from_csv) == 80
    assert from_csv[1].label_type == "PERSON_MOVEMENT" and from_csv[80].label_type == "PERSON_INTERACTION"
    assert from_csv[20].name == "climb (e.g., a mountain)"  # quoted csv field with a comma
    pbtxt = tmp_path / "ava_action_list_v2.2.pbtxt"
    save_label_map_pbtxt(from_csv, pbtxt)
    assert 'label {\n  name: "bend/bow (at the waist)"\n  label_id: 1\n  label_type: PERSON_MOVEMENT\n}' in pbtxt.read_text()
    assert load_label_map(pbtxt) == from_csv
    sixty = load_label_map(ava_data / "ava_action_list_v2.1_for_activitynet_2018.pbtxt")
    assert len(sixty) == 60 and all(c.label_type is None for c in sixty.values())
    assert set(sixty) < set(from_csv)
    assert all(sixty[i].name == from_csv[i].name for i in sixty)
    tiny = load_label_map(ava_data / "mmaction2_sample" / "action_list.txt")
    assert sorted(tiny) == [12, 17, 79, 80]


@pytest.mark.parametrize("text, message", [
    ('label {\n  name: "a"\n  label_id: 1\n', "ends inside block"),
    ('label {\n  name: "a"\n}\n', "needs 'name' and 'label_id'"),
    ('label {\n  name: "a"\n  label_id: x\n}\n', "expected an integer label_id"),
    ('label {\n  name: "a"\n  label_id: 1\n  label_type: DANCING\n}\n', "expected label_type"),
    ('item { name: "a" id: 1 }\nitem { name: "b" id: 1 }\n', "defined twice"),
    ('thing { name: "a" id: 1 }\n', "expected 'label' or 'item' blocks"),
    ('', "at least one action class"),
])
def test_label_map_errors_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.pbtxt"
    path.write_text(text)
    with pytest.raises(AnnotationFormatError, match=message):
        load_label_map(path)


def test_file_lists_keep_ids_starting_with_dash_or_underscore(ava_data):
    names = load_file_list(ava_data / "ava_file_names_trainval_v2.1.txt")
    assert len(names) == 299
    assert names["-5KQ66BBWC4"] == "-5KQ66BBWC4.mkv"
    assert names["_-Z6wFjXtGQ"] == "_-Z6wFjXtGQ.mkv"
    assert {n.rsplit(".", 1)[1] for n in names.values()} == {"mkv", "mp4", "webm"}
    test_names = load_file_list(ava_data / "ava_file_names_test_v2.1.txt")
    assert not set(test_names) & set(names)


@pytest.mark.parametrize("line", ["../../etc/passwd.mkv", "/abs/x.mkv", "noext", "a b.mp4"])
def test_file_list_refuses_unsafe_names(tmp_path, line):
    path = tmp_path / "list.txt"
    path.write_text(line + "\n")
    with pytest.raises(AnnotationFormatError, match="line 1"):
        load_file_list(path)


def test_real_excluded_timestamp_files(ava_data):
    train = load_excluded_timestamps(ava_data / "ava_train_excluded_timestamps_v2.1.csv")
    val = load_excluded_timestamps(ava_data / "ava_val_excluded_timestamps_v2.1.csv")
    assert ("0f39OWEqJ24", 1110) in train and ("5BDj0ow5hnA", 1038) in val
    assert all(902 <= t <= 1798 for _, t in train | val)


def test_proposals_pickle(ava_data):
    props = load_proposals(ava_data / "mmaction2_sample" / "ava_proposals_sample.pkl")
    assert set(props) == {("0f39OWEqJ24", 902), ("0f39OWEqJ24", 903), ("_-Z6wFjXtGQ", 902)}
    assert props[("_-Z6wFjXtGQ", 902)].shape == (3, 5)
    assert props[("_-Z6wFjXtGQ", 902)].dtype == np.float64


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /tmp/refava_pwned",))


def test_proposals_pickle_does_not_run_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v,0902": _Evil()}))
    with pytest.raises(AnnotationFormatError, match="refusing to load global"):
        load_proposals(path)


def test_proposals_wrong_shapes(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"v,0902": np.zeros((3, 2))}))
    with pytest.raises(AnnotationFormatError, match=r"expected an array \(N, 5\)"):
        load_proposals(path)
    path.write_bytes(pickle.dumps({"v-0902": np.zeros((3, 5))}))
    with pytest.raises(AnnotationFormatError, match="expected keys 'video_id,TTTT'"):
        load_proposals(path)


def test_results_csv_with_scores(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("1j20qq1JyX4,0902,0.002,0.118,0.714,0.977,12,0.93\n1j20qq1JyX4,0902,0.002,0.118,0.714,0.977,79,0.41\n")
    rows = load_ava_results_csv(path)
    assert [r.score for r in rows] == [0.93, 0.41]
    path.write_text("1j20qq1JyX4,0902,0.002,0.118,0.714,0.977,12,high\n")
    with pytest.raises(AnnotationFormatError, match="results.csv line 1: expected a score"):
        load_ava_results_csv(path)


BAD_ROWS = [
    ("vid,0902,0.1,0.1,0.5,0.9,12", "malformed_row", "8 columns"),
    ("vid,09x2,0.1,0.1,0.5,0.9,12,0", "malformed_row", "integer timestamp"),
    ("vid,0902,0.5,0.1,0.3,0.9,12,0", "invalid_box", "x2=0.3 <= x1=0.5"),
    ("vid,0902,0.1,0.1,0.5,1.2,12,0", "invalid_box", "y2=1.2"),
    ("vid,0902,-0.1,0.1,0.5,0.9,12,0", "invalid_box", "x1=-0.1"),
    ("vid,0902,0.1,0.9,0.5,0.9,12,0", "invalid_box", "y2=0.9 <= y1=0.9"),
    ("vid,0902,0.1,0.1,0.5,0.9,81,0", "unknown_action", "action_id=81"),
    ("../evil,0902,0.1,0.1,0.5,0.9,12,0", "unsafe_id", "'../evil'"),
    ("vid,0902,0.1,0.1,0.5,0.9,12,0", "duplicate_row", "repeat"),
]


@pytest.mark.parametrize("row, kind, found", BAD_ROWS, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD_ROWS)])
def test_bad_rows_are_counted_with_line_and_the_rest_kept(tmp_path, row, kind, found):
    good = "vid,0902,0.1,0.1,0.5,0.9,12,0"
    path = tmp_path / "gt.csv"
    path.write_text(f"{good}\n{row}\nvid,0903,0.2,0.2,0.6,0.8,14,1\n")
    log = ProblemLog()
    rows = load_ava_csv(path, known_actions=range(1, 81), problems=log)
    assert [p.kind for p in log.problems] == [kind]
    problem = log.problems[0]
    assert problem.where == "gt.csv line 2"
    assert found in problem.message()
    assert len(rows) == 2  # the good rows around it are kept
    with pytest.raises(AnnotationFormatError, match="gt.csv line 2"):
        load_ava_csv(path, known_actions=range(1, 81))


def test_conflicting_boxes_for_one_person_keep_the_first(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("vid,0902,0.1,0.1,0.5,0.9,12,0\nvid,0902,0.2,0.1,0.5,0.9,14,0\n")
    log = ProblemLog()
    instances = group_instances(load_ava_csv(path), source="gt.csv", problems=log)
    assert [p.kind for p in log.problems] == ["conflicting_box"]
    assert "gt.csv line 2" in log.problems[0].where
    assert instances[0].box_xyxy == (0.1, 0.1, 0.5, 0.9) and instances[0].action_ids == (12, 14)
