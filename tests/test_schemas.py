"""Tables: JSON Schemas are the source of truth; Arrow schemas, records and files agree with them."""
from __future__ import annotations

from dataclasses import fields, replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refava.errors import SchemaError, StageError
from refava.records import Clip, Clips, Instance, Instances, Movie, Movies, parse_instance_id
from refava.schemas import arrow_schema, json_schema, known_tables, validate_rows
from refava.tables import read_provenance, read_table, write_table


def make_instance(**kw) -> Instance:
    base = dict(instance_id="-5KQ66BBWC4___0902___3", clip_id="-5KQ66BBWC4___0902", video_id="-5KQ66BBWC4",
                timestamp=902, person_id=3, box_xyxy=(0.1, 0.2, 0.5, 0.9), action_ids=(12, 79), source="gt.csv:4,5")
    base.update(kw)
    return Instance(**base)


@pytest.mark.parametrize("record", [Movie, Instance, Clip])
def test_record_fields_match_json_schema(record):
    schema = json_schema(record.table)
    assert [f.name for f in fields(record)] == list(schema["properties"])
    assert set(schema["required"]) == set(schema["properties"])


def test_every_table_has_a_schema_and_an_arrow_form():
    for name in ("movies", "instances", "clips", "frames"):
        assert name in known_tables()
        assert arrow_schema(name).names == list(json_schema(name)["properties"])
    assert arrow_schema("frames").field("jpeg").type == pa.binary()
    assert arrow_schema("instances").field("action_ids").type == pa.list_(pa.int16())
    assert not arrow_schema("instances").field("video_id").nullable


def test_instances_round_trip_and_provenance(tmp_path):
    table = Instances([make_instance(), make_instance(instance_id="-5KQ66BBWC4___0902___4", person_id=4)])
    path = tmp_path / "instances.parquet"
    table.to_parquet(path, provenance={"stage": "test", "params": {"a": 1}})
    assert Instances.from_parquet(path) == table
    meta = read_provenance(path)
    assert meta["table"] == "instances" and meta["params"] == {"a": 1} and "refava_version" in meta
    assert pq.read_table(path).schema.field("person_id").type == pa.int32()


def test_writing_the_same_rows_twice_gives_identical_bytes(tmp_path):
    table = Instances([make_instance()])
    table.to_parquet(tmp_path / "a.parquet", provenance={"x": 1})
    table.to_parquet(tmp_path / "b.parquet", provenance={"x": 1})
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


@pytest.mark.parametrize("change, message", [
    (dict(box_xyxy=(0.1, 0.2, 1.5, 0.9)), r"box_xyxy.2"),
    (dict(box_xyxy=(0.1, 0.2, 0.5)), "box_xyxy"),
    (dict(action_ids=(0,)), r"action_ids.0"),
    (dict(instance_id="../x___0902___1"), "instance_id"),
    (dict(video_id="a/b"), "video_id"),
])
def test_bad_rows_name_table_id_and_field(tmp_path, change, message):
    bad = replace(make_instance(), **change)
    with pytest.raises(SchemaError, match=message) as info:
        Instances([make_instance(instance_id="-5KQ66BBWC4___0902___9"), bad]).to_parquet(tmp_path / "i.parquet")
    assert "row 1" in str(info.value)
    assert not (tmp_path / "i.parquet").exists()  # nothing half-written


def test_read_checks_columns_and_says_which_stage(tmp_path):
    with pytest.raises(StageError, match="run the stage"):
        read_table("instances", tmp_path / "missing.parquet")
    pq.write_table(pa.table({"instance_id": ["x"]}), tmp_path / "odd.parquet")
    with pytest.raises(SchemaError, match="missing .*video_id"):
        read_table("instances", tmp_path / "odd.parquet")
    with pytest.raises(SchemaError, match="unknown table format"):
        write_table("instances", [], tmp_path / "x.csv")


def test_validate_rows_binary_field():
    row = {"clip_id": "v___0902", "role": "keyframe", "grid_index": 45, "target_s": 902.0, "pts_s": 902.0,
           "width": 4, "height": 4, "jpeg": b"\xff\xd8"}
    assert validate_rows("frames", [row]) == 1
    with pytest.raises(SchemaError, match="expected bytes"):
        validate_rows("frames", [{**row, "jpeg": "not bytes"}])
    with pytest.raises(SchemaError, match="grid_index"):
        validate_rows("frames", [{**row, "grid_index": 90}])


def test_instance_id_parsing_keeps_underscores_in_video_ids():
    assert parse_instance_id("_-Z6wFjXtGQ___0902___12") == ("_-Z6wFjXtGQ", 902, 12)
    assert parse_instance_id("a___b___0902___1") == ("a___b", 902, 1)


def test_collections_are_keyed_and_immutable():
    movies = Movies([Movie("v", "v.mkv", "matroska,webm", "h264", 64, 48, 30.0, 5.0, 150, "packets", 0.0, 100)])
    assert "v" in movies and movies["v"].fps == 30.0
    with pytest.raises(Exception):
        movies["v"].fps = 25.0  # frozen
    clips = Clips([])
    assert len(clips) == 0
