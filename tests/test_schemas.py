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


def _tricky_values(prop: dict, rng) -> list:
    """Values around what a property allows: right and wrong types, bounds, patterns, enums, nested shapes."""
    values = [None, True, False, 0, 1, -1, 1.0, 1.5, -0.5, float("nan"), 10 ** 12, "", "x", "abc___0001",
              "-a_b___12345", "-a_b___0012___3", "a___0001___", "../x", "a" * 64, "0f" * 32, "fog_s3",
              "rain_s2_drops", "fog_s6", "Fog", [], [1], [1, 2, 3], ["a"], [0.1, 0.1, 0.5, 0.9], [0.5, 2.0],
              {}, {"jpeg_bytes": 50}, {"jpeg_bytes": 500}, {"k": 1}, b"bytes"]
    for key in ("minimum", "maximum", "exclusiveMinimum"):
        if key in prop:
            b = prop[key]
            values += [b, b - 1, b + 1, b - 0.5, b + 0.5, float(b)]
    values += list(prop.get("enum", []))
    if prop.get("type") == "array" or "items" in prop:
        inner = _tricky_values(prop.get("items", {}), rng)
        values += [[inner[int(i)] for i in rng.integers(0, len(inner), int(n))] for n in rng.integers(0, 4, 12)]
        for n in {prop.get("minItems", 0), prop.get("maxItems", 0)} - {0, 1, 2, 3}:     # long fixed-size lists
            values += [[v] * n for v in (0, 1, 0.0, 0.5, 1.0, 2.0, "a", None)]
            values += [[inner[int(i)] for i in rng.integers(0, len(inner), n + k)] for k in (-1, 0, 1)]
    return values


@pytest.mark.parametrize("name", known_tables())
def test_quick_check_agrees_with_jsonschema(name):
    """validate_rows' quick check must never accept what jsonschema refuses; on these rows it agrees exactly."""
    import numpy as np

    from refava.schemas import _quick_check, _validator

    quick, validator = _quick_check(name), _validator(name)
    assert quick is not None, f"{name}: schema uses a keyword the quick check does not know"
    schema = json_schema(name)
    rng = np.random.default_rng(0)
    pools = {key: _tricky_values(prop, rng) for key, prop in schema["properties"].items()}
    # a valid row to mutate: the first of its pool's values that the property's own schema accepts
    import jsonschema

    base = {}
    for key, prop in schema["properties"].items():
        ok = [v for v in pools[key] if not list(jsonschema.Draft202012Validator(prop).iter_errors(v))]
        if ok:
            base[key] = ok[0]
    agreed = accepted = 0
    for trial in range(1500):
        row = dict(base)
        for key in rng.choice(list(pools), size=int(rng.integers(0, 3)), replace=False):
            row[key] = pools[key][int(rng.integers(len(pools[key])))]
        if rng.random() < 0.05 and row:
            del row[list(row)[int(rng.integers(len(row)))]]
        if rng.random() < 0.05:
            row["unexpected"] = 1
        valid = not list(validator.iter_errors(row))
        assert quick(row) == valid, f"{name}: quick {quick(row)} vs jsonschema {valid} on {row!r}"
        agreed += 1
        accepted += valid
    assert agreed == 1500 and 100 < accepted < 1400      # both kinds of rows were tried


def test_a_table_written_before_an_optional_column_existed_still_reads(tmp_path):
    """tables/rephrasings.parquet from before only_reorders (issue 26): read with nulls there, not refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from refava.schemas import arrow_schema
    from refava.tables import read_table

    schema = arrow_schema("rephrasings")
    old = pa.schema([f for f in schema if f.name != "only_reorders"])
    row = {"instance_id": "m___0902___1", "index": 0, "original": "the man on the left", "text": "on the left, the man",
           "rejected_text": None, "status": "ok", "reasons": [], "attempts": 1, "backend": "local", "model": "m",
           "template_id": "fewshot-v2", "template_sha256": "0" * 64, "temperature": 0.8, "seed": 1,
           "prompt_tokens": 1, "completion_tokens": 1}
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / "rephrasings.parquet")
    back = read_table("rephrasings", tmp_path / "rephrasings.parquet").to_pylist()
    assert back[0]["only_reorders"] is None and back[0]["text"] == "on the left, the man"
