"""Issue 20: the per-movie stages under every engine (local pool, Ray, job-array shards) give the same bytes."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from refava.engine import Engine, parse_shard
from refava.errors import ConfigError, StageError

CORRUPT = ["corrupt", "--type", "rain", "--type", "fog", "--severity", "2", "--split", "all", "--no-progress"]


def refava(*args, cwd, env=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "refava", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def digests(ws: Path) -> dict[str, str]:
    """sha256 of every table and frame store (reports hold wall-clock figures and are left out)."""
    out = {}
    for folder in ("tables", "frames"):
        for path in sorted((ws / folder).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(ws))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(ws: Path) -> list[str]:
    return [str(p.relative_to(ws)) for p in ws.rglob("*") if p.name.endswith(".tmp") or ".staged." in p.name]


@pytest.fixture(scope="module")
def empty_ws(sample_workspace_template, tmp_path_factory):
    """The sample workspace before ingest (its refava.toml and annotations), and splits for corrupt after it."""
    ws = tmp_path_factory.mktemp("scale") / "ws"
    shutil.copytree(sample_workspace_template, ws)
    splits_src = ws / "tables"
    refava("build-splits", cwd=ws)
    keep = (splits_src / "splits.parquet").read_bytes()
    shutil.rmtree(ws / "frames")
    for name in ("movies", "instances", "clips", "splits"):
        (ws / "tables" / f"{name}.parquet").unlink()
    return ws, keep


@pytest.fixture(scope="module")
def reference(empty_ws, tmp_path_factory):
    """One plain local run: ingest with two workers, then the corruptions."""
    base, splits = empty_ws
    ws = tmp_path_factory.mktemp("ref") / "ws"
    shutil.copytree(base, ws)
    refava("ingest", "--no-progress", "--workers", "2", cwd=ws)
    (ws / "tables" / "splits.parquet").write_bytes(splits)
    refava(*CORRUPT, cwd=ws)
    return digests(ws)


def fresh(empty_ws, tmp_path: Path, name: str) -> Path:
    base, _ = empty_ws
    ws = tmp_path / name
    shutil.copytree(base, ws)
    return ws


def test_one_worker_and_several_give_the_same_bytes(empty_ws, reference, tmp_path):
    ws = fresh(empty_ws, tmp_path, "one")
    refava("ingest", "--no-progress", "--workers", "1", cwd=ws)
    (ws / "tables" / "splits.parquet").write_bytes(empty_ws[1])
    refava(*CORRUPT, "--workers", "3", cwd=ws)
    assert digests(ws) == reference


def test_shards_then_merge_equal_one_local_run_and_a_killed_shard_resumes(empty_ws, reference, tmp_path):
    ws = fresh(empty_ws, tmp_path, "shards")
    from refava.workspace import Workspace

    w = Workspace.load(ws)
    video = sorted(p.stem for p in w.path(w.config["ava"]["movies_dir"]).iterdir())[0]
    # shard 0 of 2 is killed mid-movie (the whole process: one worker), then rerun: it resumes
    marker = tmp_path / "killed-once"
    proc = refava("ingest", "--no-progress", "--workers", "1", "--shard", "0/2", cwd=ws, check=False,
                  env={"REFAVA_FAULT": f"ingest:{video}:{marker}"})
    assert proc.returncode == -9 and marker.exists()
    # merging before every shard is done is refused, naming what is missing and which shard does it
    proc = refava("ingest", "--merge", "--no-progress", cwd=ws, check=False)
    assert proc.returncode != 0 and "not done yet" in proc.stderr and "shard" in proc.stderr
    assert not (ws / "tables" / "movies.parquet").exists()
    out0 = refava("ingest", "--no-progress", "--workers", "1", "--shard", "0/2", cwd=ws).stdout
    status = refava("status", cwd=ws).stdout
    assert "ingest         partial" in status and "--merge" in status
    out1 = refava("ingest", "--no-progress", "--workers", "2", "--shard", "1/2", cwd=ws).stdout
    assert "ingest shard 0/2" in out0 and "every movie of every shard is done" in out1
    assert not (ws / "tables" / "movies.parquet").exists()            # shards write no table
    before = {p.name: p.stat().st_mtime_ns for p in (ws / "frames" / "clean").glob("*.parquet")}
    out = refava("ingest", "--merge", "--no-progress", cwd=ws).stdout
    assert "reused" in out
    assert {p.name: p.stat().st_mtime_ns for p in (ws / "frames" / "clean").glob("*.parquet")} == before
    (ws / "tables" / "splits.parquet").write_bytes(empty_ws[1])
    for shard in ("1/3", "0/3", "2/3"):
        refava(*CORRUPT, "--shard", shard, cwd=ws)
    assert not (ws / "tables" / "corruptions.parquet").exists()
    refava(*CORRUPT, "--merge", cwd=ws)
    assert digests(ws) == reference
    assert leftovers(ws) == []


RAY_KILLED_MOVIE = "_smpl00b2Rw"            # a Matroska movie of the sample corpus


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray cluster in this process (no dashboard, no network beyond 127.0.0.1); its workers inherit the
    environment, so REFAVA_FAULT reaches them."""
    ray = pytest.importorskip("ray", reason="needs the ray extra (pip install 'refava[ray]'; make test does)")
    marker = tmp_path_factory.mktemp("fault") / "ray-worker-killed"
    os.environ["REFAVA_FAULT"] = f"ingest:{RAY_KILLED_MOVIE}:{marker}"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray, marker
    finally:
        ray.shutdown()
        os.environ.pop("REFAVA_FAULT", None)


def test_ray_engine_gives_the_local_bytes_even_when_a_worker_is_killed(empty_ws, reference, tmp_path, ray_cluster):
    from refava.corrupt import resolve
    from refava.corrupt.stage import corrupt_workspace
    from refava.ingest import ingest
    from refava.workspace import Workspace

    ray, marker = ray_cluster
    ws_root = fresh(empty_ws, tmp_path, "ray")
    ws = Workspace.load(ws_root)
    movies = ws.path(ws.config["ava"]["movies_dir"])
    assert any(movies.glob(f"{RAY_KILLED_MOVIE}.*"))
    ingest(ws_root, movies, ws.paths("ava", "annotations"), label_map=ws.optional_path("ava", "label_map"),
           excluded_files=ws.paths("ava", "excluded"), engine=Engine("ray"), progress=False, log=lambda *_: None)
    assert marker.exists(), "the fault hook never fired: no worker was killed"
    (ws_root / "tables" / "splits.parquet").write_bytes(empty_ws[1])
    specs = [resolve(kind, 2) for kind in ("rain", "fog")]
    corrupt_workspace(ws, specs, ("all",), engine=Engine("ray"), progress=False, log=lambda *_: None)
    assert digests(ws_root) == reference
    assert leftovers(ws_root) == []


def test_engine_and_shard_arguments_are_checked(empty_ws, tmp_path):
    for text in ("2/2", "a/b", "1", "-1/3"):
        with pytest.raises(ConfigError, match="I/N"):
            parse_shard(text)
    assert parse_shard("1/3").take(list(range(7))) == [1, 4]
    ws = fresh(empty_ws, tmp_path, "args")
    for args, message in ((["--shard", "0/2", "--merge"], "separate runs"), (["--ray-address", "auto"], "--engine ray"),
                          (["--shard", "3/2"], "0 <= I < N")):
        proc = refava("ingest", "--no-progress", *args, cwd=ws, check=False)
        assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(StageError, match="not done yet"):
        from refava.ingest import ingest
        from refava.workspace import Workspace

        w = Workspace.load(ws)
        ingest(ws, w.path(w.config["ava"]["movies_dir"]), w.paths("ava", "annotations"), merge=True, progress=False,
               log=lambda *_: None)


def test_a_task_error_on_ray_comes_back_as_refavas_message(empty_ws, tmp_path, ray_cluster):
    """An error raised by the task itself (a damaged frame store) is not retried and reaches the caller as the
    same refava error a local run gives, naming the movie, not as a Ray traceback."""
    from refava.corrupt import resolve
    from refava.corrupt.stage import corrupt_workspace
    from refava.framestore import DamagedFrameStoreError
    from refava.ingest import ingest
    from refava.workspace import Workspace

    ws_root = fresh(empty_ws, tmp_path, "ray-error")
    ws = Workspace.load(ws_root)
    ingest(ws_root, ws.path(ws.config["ava"]["movies_dir"]), ws.paths("ava", "annotations"),
           label_map=ws.optional_path("ava", "label_map"), excluded_files=ws.paths("ava", "excluded"),
           workers=1, progress=False, log=lambda *_: None)
    (ws_root / "tables" / "splits.parquet").write_bytes(empty_ws[1])
    import pyarrow.parquet as pq

    from refava.tables import read_provenance, write_table

    store = sorted((ws_root / "frames" / "clean").glob("*.parquet"))[0]
    rows = pq.read_table(store).to_pylist()
    rows[0]["jpeg"] = rows[0]["jpeg"][:-10] + b"\0" * 10                  # the bytes no longer match their record
    write_table("frames", rows, store, provenance=read_provenance(store))
    with pytest.raises(DamagedFrameStoreError, match=store.stem):
        corrupt_workspace(ws, [resolve("fog", 1)], ("all",), engine=Engine("ray"), progress=False,
                          log=lambda *_: None)
