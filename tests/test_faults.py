"""The fault suite (issue 17): truncated movies, killed commands, damaged files, hostile inputs.

Each test reproduces one fault as a user meets it and checks that nothing hangs, nothing is lost and nothing is
left behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factories import make_indexed_video
from test_ingest import people_rows, write_csv

REFAVA = [sys.executable, "-m", "refava"]


def refava(*args, cwd=None, timeout=120, env=None, check=False):
    """Run the CLI in a child process (as a user does); returns the CompletedProcess."""
    proc = subprocess.run([*REFAVA, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode:
        raise AssertionError(f"refava {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_workspace(tmp_path: Path, movies: Path, rows: list[str], **clips) -> Path:
    from refava.workspace import init_workspace

    csv = write_csv(tmp_path / "gt.csv", rows)
    ws = tmp_path / "ws"
    init_workspace(ws, overrides={"ava": {"movies_dir": str(movies), "annotations": [str(csv)]},
                                  "ingest": {"workers": 1}, **({"clips": clips} if clips else {})})
    return ws


# -- 1. no hang ---------------------------------------------------------------------------------------------------

def test_a_keyframe_40s_past_the_end_of_a_truncated_movie_ends_the_run(tmp_path):
    movies = tmp_path / "movies"
    cut = movies / "cut.mkv"
    make_indexed_video(cut, 450, fps=30)          # 15 s, cut to about 7 s below
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    ws = make_workspace(tmp_path, movies, people_rows("cut", [2, 3, 48]))
    started = time.monotonic()
    proc = refava("-w", ws, "ingest", "--no-progress", timeout=60)
    assert time.monotonic() - started < 60
    assert proc.returncode == 0, proc.stderr
    report = json.loads((ws / "reports" / "ingest.json").read_text())
    assert report["problem_counts"].get("keyframe_past_end") == 1
    assert "cut___0048" in json.dumps(report["problems"])
    assert report["counts"]["clips"] == 2


@pytest.fixture
def ingested(tmp_path):
    """A small workspace, ingested once through the CLI (two movies, four clips)."""
    movies = tmp_path / "movies"
    make_indexed_video(movies / "a.mkv", 240, fps=30)
    make_indexed_video(movies / "b.mp4", 240, fps=25)
    ws = make_workspace(tmp_path, movies, people_rows("a", [2, 3]) + people_rows("b", [3, 4]))
    refava("-w", ws, "ingest", "--no-progress", check=True)
    return ws


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 6. validate before destroying -----------------------------------------------------------------------------

@pytest.mark.parametrize("section, key, value, expected", [
    ("ingest", "workers", "-3", ">= 0"),
    ("clips", "frames", "0", "1..90"),
    ("clips", "frames", "91", "1..90"),
    ("clips", "jpeg_quality", "101", "1..100"),
    ("clips", "short_side", "-1", ">= 0"),
    ("clips", "frames", "true", "expected int"),
    ("ingest", "workers", "false", "expected int"),
])
def test_config_values_are_range_checked_before_force_deletes_anything(ingested, section, key, value, expected):
    before = snapshot(ingested / "frames")
    import tomllib

    from refava.workspace import dump_config

    toml = ingested / "refava.toml"
    config = tomllib.loads(toml.read_text())
    config[section][key] = tomllib.loads(f"v = {value}")["v"]
    toml.write_text(dump_config(config))
    proc = refava("-w", ingested, "ingest", "--force", "--no-progress")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert f"[{section}] {key}" in proc.stderr and expected in proc.stderr and value in proc.stderr
    assert snapshot(ingested / "frames") == before


def test_force_replaces_each_movie_only_when_its_new_frames_are_complete(ingested, monkeypatch):
    from refava.ingest import stage as ingest_module

    before = snapshot(ingested / "frames")
    calls = []

    def failing(video_id, *args, **kw):
        calls.append(video_id)
        if len(calls) == 2:
            raise RuntimeError("decoder blew up")
        return real(video_id, *args, **kw)
    real = ingest_module.ingest_movie
    monkeypatch.setattr(ingest_module, "ingest_movie", failing)
    with pytest.raises(RuntimeError):
        ingest_module.ingest(ingested, ingested.parent / "movies", [ingested.parent / "gt.csv"], workers=1,
                             force=True, progress=False, log=lambda *_: None)
    after = snapshot(ingested / "frames")
    assert set(after) == set(before)              # the second movie's old frames are still there
    assert after["clean/b.parquet"] == before["clean/b.parquet"]


def test_an_annotation_file_without_usable_rows_does_not_empty_the_tables(ingested):
    before = snapshot(ingested / "tables")
    (ingested.parent / "gt.csv").write_text("not,an,ava,row\n")
    proc = refava("-w", ingested, "ingest", "--force", "--no-progress")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--allow-empty" in proc.stderr and "malformed_row" in proc.stderr
    assert snapshot(ingested / "tables") == before
    proc = refava("-w", ingested, "ingest", "--force", "--allow-empty", "--no-progress", check=True)
    from refava.records import Instances
    assert len(Instances.from_parquet(ingested / "tables" / "instances.parquet")) == 0


def test_an_export_whose_every_answer_is_rejected_is_refused(ingested, tmp_path):
    export = tmp_path / "export.json"
    export.write_text(json.dumps([{"id": 1, "data": {"clip_id": "nope___0002"}, "annotations": [
        {"id": 5, "completed_by": {"email": "a@x"}, "result": [
            {"id": "zz", "from_name": "expression", "value": {"text": ["the man on the left"]}}]}]}]))
    proc = refava("-w", ingested, "annotate", "import", export)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "rejected" in proc.stderr and "--allow-empty" in proc.stderr
    assert not (ingested / "tables" / "annotations.parquet").exists()
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    proc = refava("-w", ingested, "annotate", "import", empty)
    assert proc.returncode != 0 and "holds no answers" in proc.stderr
    refava("-w", ingested, "annotate", "import", empty, "--allow-empty", check=True)


# -- 11. inputs checked early ----------------------------------------------------------------------------------

def test_init_refuses_annotation_paths_that_do_not_exist_and_says_where_paths_point(tmp_path):
    proc = refava("init", tmp_path / "ws", "--annotations", tmp_path / "nope.csv", "--movies-dir", tmp_path / "m")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "nope.csv" in proc.stderr and not (tmp_path / "ws" / "refava.toml").exists()
    csv = write_csv(tmp_path / "gt.csv", people_rows("a", [2]))
    proc = refava("init", tmp_path / "ws", "--annotations", csv, "--movies-dir", tmp_path / "m", check=True)
    assert "relative to the workspace" in proc.stdout
    assert "../gt.csv" in proc.stdout and str(csv) in proc.stdout
    assert "does not exist yet" in proc.stdout          # the movies folder: `refava download` fills it


# -- 8. locks ----------------------------------------------------------------------------------------------------

def test_a_second_writer_of_the_same_stage_is_refused_naming_the_holder(ingested):
    from refava.workspace import Workspace

    ws = Workspace.load(ingested)
    with ws.lock("ingest"):
        started = time.monotonic()
        proc = refava("-w", ingested, "ingest", "--force", "--no-progress")
        assert time.monotonic() - started < 30
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert f"PID {os.getpid()}" in proc.stderr and "already running" in proc.stderr
        status = refava("-w", ingested, "status", check=True)          # readers are not blocked
        assert "ingest" in status.stdout
    refava("-w", ingested, "ingest", "--force", "--no-progress", check=True)


def test_the_lock_of_a_killed_run_is_taken_over(ingested):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from refava.workspace import Workspace\n"
        f"ws = Workspace.load({str(ingested)!r})\n"
        "with ws.lock('ingest'):\n    print('held', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert refava("-w", ingested, "ingest", "--force", "--no-progress").returncode != 0
    holder.kill()
    holder.wait()
    refava("-w", ingested, "ingest", "--force", "--no-progress", check=True)


# -- 5. integrity of the frame stores ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def packaged_ws(sample_workspace_template, tmp_path_factory):
    """The sample workspace with splits and a packaged dataset (copied per test by ``ws_copy``)."""
    import shutil

    ws = tmp_path_factory.mktemp("faults-pkg") / "ws"
    shutil.copytree(sample_workspace_template, ws)
    for args in (["build-splits"], ["package", "--no-progress"]):
        refava("-w", ws, *args, check=True)
    return ws


@pytest.fixture
def ws_copy(packaged_ws, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(packaged_ws, ws)
    return ws


def _zero_block(path: Path, offset: int, size: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    data[offset:offset + size] = bytes(size)
    path.write_bytes(bytes(data))


def _clip_at(path: Path, offset: int) -> str:
    """The clip whose JPEG bytes lie at byte ``offset`` of an uncompressed frame store (read back from the file)."""
    import pyarrow.parquet as pq

    data = path.read_bytes()
    for row in pq.read_table(path, columns=["clip_id", "jpeg"]).to_pylist():
        at = data.find(row["jpeg"])
        if at <= offset < at + len(row["jpeg"]):
            return row["clip_id"]
    raise AssertionError("no JPEG at that offset")


def test_a_zeroed_block_in_a_frame_store_is_named_by_verify_and_refused_by_package(ws_copy):
    store = sorted((ws_copy / "frames" / "clean").glob("*.parquet"))[0]
    offset = store.stat().st_size // 3
    clip = _clip_at(store, offset)
    before = snapshot(ws_copy / "refava")
    assert refava("-w", ws_copy, "verify", "--no-progress").returncode == 0
    _zero_block(store, offset)
    proc = refava("-w", ws_copy, "verify", "--no-progress")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"movie {store.stem}" in proc.stdout and clip in proc.stdout and "refava ingest" in proc.stdout
    proc = refava("-w", ws_copy, "package", "--no-progress")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert store.stem in proc.stderr and clip in proc.stderr and "damaged" in proc.stderr
    assert snapshot(ws_copy / "refava") == before                       # the last good dataset is kept
    # the named fix works: delete the store, ingest redoes that movie only, verify and package pass again
    store.unlink()
    out = refava("-w", ws_copy, "ingest", "--no-progress", check=True).stdout
    assert "reused" in out
    refava("-w", ws_copy, "verify", "--no-progress", check=True)
    refava("-w", ws_copy, "package", "--no-progress", check=True)


def test_a_damaged_footer_is_named_too(ws_copy):
    store = sorted((ws_copy / "frames" / "clean").glob("*.parquet"))[1]
    _zero_block(store, store.stat().st_size - 2000, 1000)
    proc = refava("-w", ws_copy, "verify", "--no-progress")
    assert proc.returncode != 0 and f"movie {store.stem}" in proc.stdout
    proc = refava("-w", ws_copy, "package", "--no-progress")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and store.stem in proc.stderr


def test_verify_finds_tables_that_disagree(ws_copy):
    import pyarrow.parquet as pq

    from refava.tables import write_table

    clips = pq.read_table(ws_copy / "tables" / "clips.parquet").to_pylist()
    write_table("clips", clips[1:], ws_copy / "tables" / "clips.parquet")
    proc = refava("-w", ws_copy, "verify", "--no-progress", "--no-decode")
    assert proc.returncode != 0 and "whose clip is not in clips" in proc.stdout and "refava ingest --force" in proc.stdout


def test_package_verify_decodes_every_jpeg(packaged_ws, tmp_path):
    """A shard whose checksum matches but which holds a JPEG that does not decode: found only by decoding."""
    import hashlib
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from refava.package import verify_dataset

    folder = tmp_path / "refava"
    shutil.copytree(packaged_ws / "refava", folder)
    manifest = json.loads((folder / "refava-manifest.json").read_text())
    shard = manifest["configs"]["default"]["splits"]["test"][0]
    path = folder / shard["path"]
    table = pq.read_table(path)
    keyframes = table.column("keyframe").to_pylist()
    keyframes[0] = {**keyframes[0], "bytes": b"\xff\xd8\xff\xe0" + bytes(500)}
    table = table.set_column(table.schema.get_field_index("keyframe"), table.schema.field("keyframe"),
                             pa.array(keyframes, table.schema.field("keyframe").type))
    pq.write_table(table, path)
    shard["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    shard["bytes"] = path.stat().st_size
    (folder / "refava-manifest.json").write_text(json.dumps(manifest))
    assert verify_dataset(folder, decode=False).problems == []
    problems = verify_dataset(folder).problems
    assert len(problems) == 1 and "does not decode" in problems[0] and table.column("instance_id")[0].as_py() in problems[0]
    proc = refava("package", "--verify", folder)
    assert proc.returncode != 0 and "does not decode" in proc.stderr


# -- 3. nothing stale, nothing torn --------------------------------------------------------------------------------

def test_a_killed_swap_leaves_the_dataset_recoverable(ws_copy):
    from refava.fsutil import HOST

    before = snapshot(ws_copy / "refava")
    (ws_copy / "refava").rename(ws_copy / f".refava.{HOST}~999999.old")      # killed between the two renames
    (ws_copy / f".refava.{HOST}~999998.tmp").mkdir()                           # and a half-built folder of another
    (ws_copy / f".refava.{HOST}~999998.tmp" / "half.parquet").write_bytes(b"x")
    # another node's build on a shared filesystem: its PID means nothing here, so it is never touched
    other = ws_copy / f".refava.{'other' if HOST != 'other' else 'node2'}~999997.tmp"
    other.mkdir()
    (other / "half.parquet").write_bytes(b"y")
    proc = refava("-w", ws_copy, "status", check=True)
    assert "restored" in proc.stderr
    assert snapshot(ws_copy / "refava") == before
    assert [p.name for p in ws_copy.iterdir() if p.name.startswith(".refava.")] == [other.name]
    assert (other / "half.parquet").read_bytes() == b"y"


def test_package_out_keeps_files_its_manifest_does_not_list(ws_copy, tmp_path):
    out = tmp_path / "mine"
    refava("-w", ws_copy, "package", "--no-progress", "--out", out, check=True)
    (out / "notes.txt").write_text("my notes")
    (out / "data" / "extra").mkdir()
    (out / "data" / "extra" / "mine.csv").write_text("keep")
    refava("-w", ws_copy, "package", "--no-progress", "--out", out, check=True)
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "data" / "extra" / "mine.csv").read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mine.")]


def test_temporary_files_of_dead_runs_are_cleaned_and_live_ones_kept(ingested):
    from refava.fsutil import HOST

    dead = [ingested / "frames" / "clean" / f".a.parquet.{HOST}~999999.x1y2.tmp",
            ingested / "tables" / ".movies.parquet.ab12cd.tmp",                       # an older refava's name
            ingested / "tables" / f".clips.{HOST}~999999.staged.parquet"]
    live = ingested / "tables" / f".movies.parquet.{HOST}~{os.getpid()}.zz.tmp"
    other_host = ingested / "frames" / "clean" / ".b.parquet.otherhost~999999.q.tmp"
    for path in [*dead, live, other_host]:
        path.write_bytes(b"half")
    proc = refava("-w", ingested, "status", check=True)
    assert "temporary file" in proc.stderr
    assert not any(p.exists() for p in dead)
    assert live.exists() and other_host.exists()


KILL_AFTER_RENAME = """
import os, signal, sys
real = os.replace
def replace(src, dst, *a, **k):
    real(src, dst, *a, **k)
    if str(dst).endswith("tables/movies.parquet"):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
sys.argv = ["refava"] + sys.argv[1:]
from refava.cli import main
main(sys.argv[1:])
"""


def test_the_three_ingest_tables_commit_as_one_unit(tmp_path):
    """SIGKILL right after movies.parquet is renamed into place: the next command finishes the commit, so the
    tables equal an uninterrupted run's and agree with each other."""
    import shutil

    movies = tmp_path / "movies"
    make_indexed_video(movies / "a.mkv", 240, fps=30)
    make_indexed_video(movies / "b.mp4", 240, fps=25)
    ws = make_workspace(tmp_path, movies, people_rows("a", [2, 3]))
    refava("-w", ws, "ingest", "--no-progress", check=True)
    write_csv(tmp_path / "gt.csv", people_rows("a", [2, 3]) + people_rows("b", [3, 4]))
    reference = tmp_path / "reference"
    shutil.copytree(ws, reference)
    refava("-w", reference, "ingest", "--no-progress", check=True)
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_RENAME, "-w", str(ws), "ingest", "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9
    status = refava("-w", ws, "status", check=True)
    assert "ingest" in status.stdout and "done" in status.stdout
    for name in ("movies", "instances", "clips"):
        assert (ws / "tables" / f"{name}.parquet").read_bytes() == (reference / "tables" / f"{name}.parquet").read_bytes()
    refava("-w", ws, "verify", "--no-progress", check=True)
    assert not [p for p in (ws / "tables").iterdir() if p.name.startswith(".")]


# -- 9. security -------------------------------------------------------------------------------------------------

def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    torch.save({"model": Payload()}, run / "checkpoint.pt")
    ws = tmp_path / "ws"
    refava("init", ws, check=True)
    proc = refava("-w", ws, "evaluate", "--run", run)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "weights only" in proc.stderr
    assert not marker.exists()


# -- 4. `refava status` tells the truth -------------------------------------------------------------------------

def _states(ws) -> dict[str, tuple[str, str]]:
    out = json.loads(refava("-w", ws, "status", "--json", check=True).stdout)
    return {s["stage"]: (s["state"], s["detail"]) for s in out["stages"]}


def test_an_ingest_that_finds_no_movie_fails_and_writes_no_table(tmp_path):
    """Issue 25: a wrong or empty movies_dir used to exit 0 with empty tables (and empty the tables of a build)."""
    ws = make_workspace(tmp_path, tmp_path / "no-movies", people_rows("gone", [2, 3]))
    for _ in range(2):                                       # a rerun says the same
        proc = refava("-w", ws, "ingest", "--no-progress")
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert "no-movies does not exist" in proc.stderr and "gone" in proc.stderr
        assert not (ws / "tables" / "instances.parquet").exists()
    assert _states(ws)["ingest"][0] == "missing"


def test_an_empty_movies_dir_keeps_the_tables_of_a_build(ingested, tmp_path):
    before = snapshot(ingested / "tables")
    (tmp_path / "empty").mkdir()
    proc = refava("-w", ingested, "ingest", "--no-progress", "--movies-dir", tmp_path / "empty")
    assert proc.returncode != 0 and "holds none of the annotated movies" in proc.stderr
    assert "tables already there are kept" in proc.stderr and snapshot(ingested / "tables") == before


def test_a_rerun_with_nothing_to_do_repeats_the_problems(tmp_path):
    movies = tmp_path / "movies"
    make_indexed_video(movies / "a.mkv", 240, fps=30)
    ws = make_workspace(tmp_path, movies, people_rows("a", [2, 3]) + people_rows("gone", [2]))
    refava("-w", ws, "ingest", "--no-progress", check=True)
    state, detail = _states(ws)["ingest"]
    assert state == "done" and "missing_movie 1" in detail
    again = refava("-w", ws, "ingest", "--no-progress", check=True)
    assert "nothing to do" in again.stdout and "gone" in again.stdout and "missing_movie" in again.stdout


def test_status_covers_every_stage_and_partial_ones(ws_copy):
    import shutil

    states = _states(ws_copy)
    assert states["ingest"][0] == "done" and states["build-splits"][0] == "done"
    assert states["package"][0] == "done"
    refava("-w", ws_copy, "stats", check=True)
    assert _states(ws_copy)["stats"][0] == "done"
    refava("-w", ws_copy, "corrupt", "--type", "fog", "--severity", "1", "--no-progress", check=True)
    states = _states(ws_copy)
    assert states["corrupt"][0] == "done"
    assert states["package"][0] == "stale" and "corruptions" in states["package"][1]
    (ws_copy / "tables" / "corruptions.parquet").unlink()              # frames written, manifest not yet
    state, detail = _states(ws_copy)["corrupt"]
    assert state == "partial" and "fog_s1" in detail and "without a manifest" in detail
    refava("-w", ws_copy, "build-splits", "--fresh", "--seed", "7", check=True)
    states = _states(ws_copy)
    assert states["stats"][0] == "stale"
    store = sorted((ws_copy / "frames" / "clean").glob("*.parquet"))[0]
    shutil.move(store, ws_copy / "elsewhere.parquet")
    state, detail = _states(ws_copy)["ingest"]
    assert state == "partial" and store.name in detail
    assert "nothing to do" not in refava("-w", ws_copy, "ingest", "--no-progress", check=True).stdout


# -- 7. clear errors, no tracebacks ------------------------------------------------------------------------------

def test_invalid_utf8_in_a_csv_names_file_line_and_byte(tmp_path):
    movies = tmp_path / "movies"
    make_indexed_video(movies / "a.mkv", 120, fps=30)
    rows = people_rows("a", [2, 3])
    ws = make_workspace(tmp_path, movies, rows)
    data = ("\n".join(rows[:2]) + "\n").encode() + b"a,0003,0.1,0.1,0.5,0.9,12,\xff\n"
    (tmp_path / "gt.csv").write_bytes(data)
    proc = refava("-w", ws, "ingest", "--no-progress")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "gt.csv line 3" in proc.stderr and f"byte {len(data) - 2}" in proc.stderr and "0xff" in proc.stderr


def test_a_utf8_bom_is_accepted_and_the_first_row_kept(tmp_path):
    movies = tmp_path / "movies"
    make_indexed_video(movies / "a.mkv", 180, fps=30)
    rows = people_rows("a", [2, 3])
    ws = make_workspace(tmp_path, movies, rows)
    (tmp_path / "gt.csv").write_bytes(b"\xef\xbb\xbf" + ("\n".join(rows) + "\n").encode())
    proc = refava("-w", ws, "ingest", "--no-progress", check=True)
    report = json.loads((ws / "reports" / "ingest.json").read_text())
    assert report["problem_counts"] == {} and report["counts"]["instances"] == 4, proc.stdout


@pytest.mark.parametrize("task", [
    {"id": 1, "data": ["clip"], "annotations": []},
    {"id": 2, "data": {"clip_id": "a___0002"}, "annotations": {"id": 5}},
    {"id": 3, "data": {"clip_id": "a___0002"}, "annotations": ["nope"]},
    {"id": 4, "data": {"clip_id": "a___0002"}, "annotations": [{"id": 5, "result": "text"}]},
    {"id": 5, "data": {"clip_id": "a___0002"}, "annotations": [{"id": 5, "result": [
        {"id": "person_0", "from_name": "expression", "value": "the man"}]}]},
    {"id": 6, "data": {"clip_id": "a___0002"}, "annotations": [{"id": 5, "result": [
        {"id": "person_0", "from_name": "expression", "value": {"text": "the man"}}]}]},
])
def test_exports_with_fields_of_the_wrong_type_are_problems_not_tracebacks(ingested, tmp_path, task):
    good = {"id": 9, "data": {"clip_id": "a___0002"}, "annotations": [{"id": 7, "completed_by": {"email": "x@y"},
            "result": [{"id": "person_0", "from_name": "expression", "value": {"text": ["the man on the left"]}}]}]}
    export = tmp_path / "export.json"
    export.write_text(json.dumps([good, task]))
    proc = refava("-w", ingested, "annotate", "import", export, "--stage", "describe")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "malformed_task" in proc.stdout and "1 new" in proc.stdout
    report = json.loads((ingested / "reports" / "annotate-import.json").read_text())
    assert report["problem_counts"] == {"malformed_task": 1} and f"task {task['id']}" in json.dumps(report["problems"])
    assert str(ingested / "reports" / "annotate-import.json") in proc.stdout


@pytest.fixture
def small_fs(tmp_path):
    """A real 1.2 MB tmpfs (root only): full disks and read-only mounts, not simulated."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_says_what_was_kept_and_what_is_needed(small_fs, tmp_path):
    import shutil

    movies = tmp_path / "movies"
    for name in "abcd":
        make_indexed_video(movies / f"{name}.mkv", 240, fps=30, width=320, height=240)
    ws = make_workspace(small_fs, movies, [r for n in "abcd" for r in people_rows(n, [2, 3, 4, 5, 6])],
                        short_side=0, frames=90)
    proc = refava("-w", ws, "ingest", "--no-progress")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "DiskFullError" in proc.stderr and "Kept:" in proc.stderr and "Needed:" in proc.stderr
    assert not [p for p in (ws / "frames").rglob("*.tmp")]
    kept = sorted(p.name for p in (ws / "frames" / "clean").glob("*.parquet"))
    target = tmp_path / "roomy"
    shutil.copytree(ws, target)                                  # "move the workspace", as the message says
    refava("-w", target, "ingest", "--no-progress", check=True)
    assert sorted(p.name for p in (target / "frames" / "clean").glob("*.parquet")) == ["a.parquet", "b.parquet",
                                                                                     "c.parquet", "d.parquet"]
    assert kept                                                  # finished movies survived the full disk


def test_a_read_only_workspace_is_refused_cleanly_and_readers_still_work(small_fs, tmp_path):
    movies = tmp_path / "movies"
    make_indexed_video(movies / "a.mkv", 180, fps=30)
    ws = make_workspace(small_fs, movies, people_rows("a", [2, 3]))
    refava("-w", ws, "ingest", "--no-progress", check=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    for args in (["ingest", "--force", "--no-progress"], ["build-splits"], ["annotate", "check"]):
        proc = refava("-w", ws, *args)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "read-only" in proc.stderr or "cannot write" in proc.stderr
    assert "ingest" in refava("-w", ws, "status", check=True).stdout


def test_an_undecodable_jpeg_during_corrupt_names_movie_clip_and_frame(ws_copy):
    import pyarrow.parquet as pq

    from refava.framestore import hash_rows
    from refava.tables import PROVENANCE_KEY, read_provenance

    store = sorted((ws_copy / "frames" / "clean").glob("*.parquet"))[0]
    meta = read_provenance(store)
    table = pq.read_table(store)
    rows = table.to_pylist()
    rows[3]["jpeg"] = b"\xff\xd8\xff\xe0" + bytes(300)                    # written broken, checksum recorded as such
    clip = rows[3]["clip_id"]
    meta["clip_sha256"][clip] = hash_rows([r for r in rows if r["clip_id"] == clip])
    import pyarrow as pa
    out = pa.Table.from_pylist(rows, schema=table.schema).replace_schema_metadata(
        {PROVENANCE_KEY: json.dumps(meta).encode()})
    pq.write_table(out, store, compression="none")
    proc = refava("-w", ws_copy, "corrupt", "--type", "fog", "--severity", "1", "--split", "all", "--no-progress")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert store.stem in proc.stderr and clip in proc.stderr and "grid index" in proc.stderr
    proc = refava("-w", ws_copy, "verify", "--no-progress")
    assert proc.returncode != 0 and "undecodable_jpeg" in proc.stdout and clip in proc.stdout


def test_store_check_streams_refavas_layout_and_still_reads_interleaved_clips(ws_copy, tmp_path):
    """check_frame_store reads a store one batch at a time when each clip's rows are together (as refava writes
    them); a store whose clips interleave (not refava's) is checked whole, with the same verdicts."""
    import pyarrow.parquet as pq

    from refava.framestore import check_frame_store, hash_rows
    from refava.tables import write_table

    store = sorted((ws_copy / "frames" / "clean").glob("*.parquet"))[0]
    rows = pq.read_table(store).to_pylist()
    hashes = {}
    for row in rows:
        hashes.setdefault(row["clip_id"], []).append(row)
    record = {c: hash_rows(r) for c, r in hashes.items()}
    interleaved = sorted(rows, key=lambda r: (r["grid_index"], r["clip_id"], r["role"]))
    assert [r["clip_id"] for r in interleaved] != [r["clip_id"] for r in rows]
    for name, order in (("together", rows), ("interleaved", interleaved)):
        path = tmp_path / f"{name}.parquet"
        write_table("frames", order, path, provenance={"clip_sha256": record})
        assert check_frame_store(path, decode=True) == [], name
        bad = [dict(r) for r in order]
        victim = next(i for i, r in enumerate(bad) if r["clip_id"] == rows[len(rows) // 2]["clip_id"])
        bad[victim]["jpeg"] = bad[victim]["jpeg"][:-40] + b"\0" * 40
        write_table("frames", bad, path, provenance={"clip_sha256": {**record, "ghost___0001": "0" * 64}})
        found = {(p.clip_id, p.kind) for p in check_frame_store(path)}
        assert found == {(bad[victim]["clip_id"], "checksum_mismatch"), ("ghost___0001", "missing_clip")}, name
