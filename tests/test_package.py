"""``refava package``: a Hugging Face dataset folder that ``datasets.load_dataset`` loads offline."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from refava.package import PackageError, check_target, package_workspace, verify_dataset
from refava.workspace import Workspace

LOAD_ALL = textwrap.dedent("""
    import json, sys, datasets
    target = sys.argv[1]
    out = {}
    for name in datasets.get_dataset_config_names(target):
        ds = datasets.load_dataset(target, name)
        entry = {}
        for split, d in ds.items():
            row = d[0] if len(d) else {}
            entry[split] = {
                "rows": len(d), "features": sorted(d.features), "actions": repr(d.features["actions"].feature),
                "keyframe": list(row["keyframe"].size) if "keyframe" in row else None,
                "frames": [list(f.size) for f in row.get("frames", [])],
                "ids": sorted(d["instance_id"]),
            }
        out[name] = entry
    print(json.dumps(out))
""")


def run(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "refava", *args], cwd=cwd, capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def packaged(sample_workspace_template, tmp_path_factory):
    """The sample workspace with splits, two corruption settings and a packaged dataset."""
    ws = tmp_path_factory.mktemp("pkg") / "ws"
    shutil.copytree(sample_workspace_template, ws)
    for args in (["build-splits"], ["corrupt", "--type", "fog", "--severity", "3", "--no-progress"],
                 ["corrupt", "--preset", "paper", "--type", "rain", "--split", "val", "--no-progress"],
                 ["package", "--no-progress"]):
        proc = run(*args, cwd=ws)
        assert proc.returncode == 0, proc.stderr
    return ws, proc.stdout


def load_everything(parent: Path, target: str, cache: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(cache),
           "HF_HOME": str(cache / "home")}
    proc = subprocess.run([sys.executable, "-c", LOAD_ALL, target], cwd=parent, capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_configuration_loads_offline_with_counts_features_and_frames(packaged, tmp_path):
    ws, stdout = packaged
    assert "load it:" in stdout and "x its unique JPEG bytes" in stdout
    loaded = load_everything(ws, "refava", tmp_path / "cache")                   # load_dataset("refava") from the parent
    splits = pq.read_table(ws / "tables" / "splits.parquet").to_pylist()
    by_split = {}
    for r in splits:
        by_split.setdefault({"val": "validation"}.get(r["split"], r["split"]), set()).add(r["instance_id"])
    assert set(loaded) == {"default", "annotations_only", "test_fog_s3", "val_rain_paper"}
    for split, ids in by_split.items():
        assert set(loaded["default"][split]["ids"]) == ids
        assert set(loaded["annotations_only"][split]["ids"]) == ids
    assert set(loaded["test_fog_s3"]) == {"test"} and set(loaded["val_rain_paper"]) == {"validation"}
    assert set(loaded["test_fog_s3"]["test"]["ids"]) == by_split["test"]
    full = loaded["default"]["train"]
    assert full["keyframe"][0] > 0 and len(full["frames"]) == 8 and all(w > 0 for w, _ in full["frames"])
    assert "ClassLabel" in full["actions"] and "'walk'" in full["actions"]
    assert {"keyframe", "frames"} <= set(full["features"])
    assert not {"keyframe", "frames"} & set(loaded["annotations_only"]["train"]["features"])
    assert "frame_times_s" in loaded["annotations_only"]["train"]["features"]
    # and load_dataset(DIR) from anywhere, in another fresh cache
    again = load_everything(tmp_path, str(ws / "refava"), tmp_path / "cache2")
    assert again["default"]["test"]["ids"] == loaded["default"]["test"]["ids"]


def test_card_manifest_and_verify(packaged, tmp_path):
    ws, _ = packaged
    folder = ws / "refava"
    card = (folder / "README.md").read_text()
    manifest = json.loads((folder / "refava-manifest.json").read_text())
    assert card.startswith("---\n") and "config_name: test_fog_s3" in card and "dataset_info:" in card
    assert "pretty_name: RefAVA" in card and "size_categories:" in card and "task_categories:" in card
    n_test = sum(s["rows"] for s in manifest["configs"]["default"]["splits"]["test"])
    assert f"| test | {n_test:,} |" in card and "@inproceedings{peng2024ravar" in card and "gu2018ava" in card
    report = verify_dataset(folder)
    assert report.problems == [] and report.rows == sum(
        s["rows"] for c in manifest["configs"].values() for v in c["splits"].values() for s in v)
    # tamper with a copy: a changed shard, a missing one and a stray one are all reported
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    shard = next((bad / "data" / "default").glob("test-*.parquet"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    next((bad / "data" / "annotations_only").glob("train-*.parquet")).unlink()
    (bad / "data" / "default" / "extra.parquet").write_bytes(b"PAR1")
    problems = verify_dataset(bad).problems
    assert any("sha256" in p and "test-" in p for p in problems)
    assert any("missing" in p and "annotations_only" in p for p in problems)
    assert any("extra.parquet: not in the manifest" in p for p in problems)
    proc = run("package", "--verify", str(bad), cwd=ws)
    assert proc.returncode != 0 and "problem(s)" in proc.stderr


def test_rebuild_is_atomic_and_identical(packaged):
    ws, _ = packaged
    folder = ws / "refava"
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    summary = package_workspace(Workspace.load(ws), progress=False, log=lambda *_: None)
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert before == after and summary.out == folder
    assert not [p for p in ws.iterdir() if p.name.startswith(".refava.")]       # no temporary or old folders left


def test_manifest_checksums_are_the_files_and_a_failed_checksum_stops_the_build(packaged, tmp_path, monkeypatch):
    """Checksums are taken while shards grow (small shards here: many files, several row groups each); a checksum
    that fails raises and leaves the old dataset as it was."""
    import hashlib

    import refava.package.build as package

    ws, _ = packaged
    out = tmp_path / "small-shards"
    package_workspace(Workspace.load(ws), out, shard_bytes=200_000, progress=False, log=lambda *_: None)
    manifest = json.loads((out / "refava-manifest.json").read_text())
    shards = [s for c in manifest["configs"].values() for v in c["splits"].values() for s in v]
    assert len(shards) > 10
    for shard in shards:
        assert shard["sha256"] == hashlib.sha256((out / shard["path"]).read_bytes()).hexdigest(), shard["path"]
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(self):
        raise OSError("disk read error")
    monkeypatch.setattr(package._GrowingHash, "update", broken)
    with pytest.raises(OSError, match="disk read error"):
        package_workspace(Workspace.load(ws), out, shard_bytes=200_000, progress=False, log=lambda *_: None)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".small-shards.")]


def test_refuses_folders_that_are_not_refava_datasets(packaged, tmp_path):
    ws, _ = packaged
    source_tree_package = Path(__file__).resolve().parent.parent / "refava"
    with pytest.raises(PackageError, match="Python package"):
        check_target(source_tree_package)
    stuff = tmp_path / "stuff"
    stuff.mkdir()
    (stuff / "thesis.tex").write_text("keep me")
    proc = run("package", "--out", str(stuff), cwd=ws)
    assert proc.returncode != 0 and "refusing to write into" in proc.stderr
    assert (stuff / "thesis.tex").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("package", "--out", str(empty), "--no-progress", cwd=ws).returncode == 0
    assert verify_dataset(empty).problems == []


def test_push_to_hub_without_a_token_says_what_to_do(packaged, monkeypatch):
    from refava.package import push_to_hub

    ws, _ = packaged
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(ws / "no-hf-home"))
    with pytest.raises(PackageError, match="HF_TOKEN"):
        push_to_hub(ws / "refava", "someone/refava")
