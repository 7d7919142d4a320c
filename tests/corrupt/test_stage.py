"""``refava corrupt`` over a workspace: outputs, manifest, resume, subsets, and clear errors."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import simplejpeg

from refava.corrupt import clip_rng, corrupt_frames, resolve
from refava.corrupt.stage import corrupt_movie, corrupt_workspace, selected_clips
from refava.errors import StageError
from refava.tables import read_provenance, read_table
from refava.workspace import Workspace


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "refava", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture
def split_workspace(sample_workspace_template, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, ws)
    proc = run("build-splits", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    return ws


def frames_by_clip(path):
    out = {}
    for r in read_table("frames", path).to_pylist():
        out.setdefault(r["clip_id"], []).append(r)
    return out


def test_corrupt_command_writes_frames_and_manifest_and_resumes(split_workspace):
    ws = split_workspace
    proc = run("corrupt", "--type", "fog", "--type", "rain", "--severity", "2", "--split", "all", "--no-progress",
               cwd=ws)
    assert proc.returncode == 0, proc.stderr
    assert "fog_s2" in proc.stdout and "rain_s2" in proc.stdout and "manifest:" in proc.stdout
    manifest = read_table("corruptions", ws / "tables" / "corruptions.parquet").to_pylist()
    splits = read_table("splits", ws / "tables" / "splits.parquet").to_pylist()
    clips = {r["clip_id"] for r in splits}
    assert {r["configuration"] for r in manifest} == {"fog_s2", "rain_s2"}
    assert {r["clip_id"] for r in manifest if r["configuration"] == "fog_s2"} == clips
    for row in manifest[:5]:
        clean = frames_by_clip(ws / "frames" / "clean" / f"{row['video_id']}.parquet")[row["clip_id"]]
        dirty = frames_by_clip(ws / row["path"])[row["clip_id"]]
        assert len(clean) == len(dirty) == row["frames"]
        for c, d in zip(sorted(clean, key=lambda r: r["grid_index"]), sorted(dirty, key=lambda r: r["grid_index"])):
            assert (c["grid_index"], c["role"], c["width"], c["height"]) == (d["grid_index"], d["role"], d["width"],
                                                                             d["height"])
            a = simplejpeg.decode_jpeg(c["jpeg"])
            b = simplejpeg.decode_jpeg(d["jpeg"])
            assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 2
    files = sorted((ws / "frames" / "corrupted").rglob("*.parquet"))
    before = {p: p.read_bytes() for p in files}
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    again = run("corrupt", "--type", "fog", "--type", "rain", "--severity", "2", "--split", "all", "--no-progress",
                cwd=ws)
    assert again.returncode == 0 and "0 corrupted" in again.stdout
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in files)                  # nothing redone
    # a movie file lost in a crash is redone alone, to the same bytes
    lost = files[0]
    lost.unlink()
    third = run("corrupt", "--type", "fog", "--type", "rain", "--severity", "2", "--split", "all", "--no-progress",
                cwd=ws)
    assert third.returncode == 0 and "1 corrupted" in third.stdout
    assert {p: p.read_bytes() for p in files} == before
    assert (ws / "tables" / "corruptions.parquet").exists()
    # a changed seed invalidates the records
    fourth = run("corrupt", "--type", "fog", "--severity", "2", "--split", "all", "--seed", "5", "--no-progress", cwd=ws)
    assert fourth.returncode == 0 and "0 already done" in fourth.stdout
    fog_files = [p for p in files if p.parent.name == "fog_s2"]
    assert fog_files and all(read_provenance(p)["seed"] == 5 for p in fog_files)
    assert all(read_provenance(p)["seed"] == 0 for p in files if p.parent.name == "rain_s2")


def test_any_subset_of_clips_gives_the_same_bytes(split_workspace, tmp_path):
    ws = Workspace.load(split_workspace)
    chosen = selected_clips(ws, ["all"])
    video_id, clips = next((v, c) for v, c in chosen.items() if len(c) >= 3)
    clean = ws.root / "frames" / "clean" / f"{video_id}.parquet"
    spec = resolve("shot_noise", 4)
    whole, _ = corrupt_movie(clean, tmp_path / "whole" / f"{video_id}.parquet", clips, spec, 3, 90)
    some = dict(list(clips.items())[1:3])
    part, _ = corrupt_movie(clean, tmp_path / "part" / f"{video_id}.parquet", some, spec, 3, 90)
    whole_hash = {r["clip_id"]: r["output_sha256"] for r in whole}
    assert all(whole_hash[r["clip_id"]] == r["output_sha256"] for r in part) and len(part) == 2
    # and the library call gives the stored pixels before JPEG: one clip by hand
    clip_id = next(iter(some))
    rows = sorted(frames_by_clip(clean)[clip_id], key=lambda r: (r["grid_index"], r["role"] != "keyframe"))
    images = [simplejpeg.decode_jpeg(r["jpeg"]) for r in rows]
    by_hand = corrupt_frames(images, spec, clip_rng(3, clip_id, spec.name))
    stored = sorted(frames_by_clip(tmp_path / "part" / f"{video_id}.parquet")[clip_id],
                    key=lambda r: (r["grid_index"], r["role"] != "keyframe"))
    from refava.corrupt.stage import encode_stored, storage_for

    storage = storage_for(spec, 90)                 # noise is stored at quality 98, 4:4:4 (keeps its sigma)
    assert storage["quality"] == 98
    assert [encode_stored(im, storage) for im in by_hand] == [r["jpeg"] for r in stored]


def test_preset_and_gallery_and_errors(split_workspace):
    ws = split_workspace
    proc = run("corrupt", "--preset", "ravar", "--type", "gaussian_noise", "--no-progress", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    assert (ws / "frames" / "corrupted" / "gaussian_noise_paper").is_dir()
    rows = pq.read_table(ws / "tables" / "corruptions.parquet").to_pylist()
    assert {r["split"] for r in rows} == {"test"}                                # the default split
    assert all(r["severity"] is None and r["preset"] == "paper" for r in rows)
    bad = run("corrupt", "--preset", "ravar", "--severity", "2", cwd=ws)
    assert bad.returncode != 0 and "exclude each other" in bad.stderr
    bad = run("corrupt", "--split", "holdout", cwd=ws)
    assert bad.returncode != 0 and "--split holdout" in bad.stderr and "test" in bad.stderr
    bad = run("corrupt", "--severity", "6", cwd=ws)
    assert bad.returncode != 0 and "6" in bad.stderr
    gallery = run("corrupt", "--gallery", "--gallery-clips", "2", cwd=ws)
    assert gallery.returncode == 0, gallery.stderr
    png = ws / "reports" / "corrupt_gallery.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    helptext = run("corrupt", "--help", cwd=ws).stdout
    assert "--preset" in helptext and "frames/corrupted" in helptext


def test_corrupt_needs_splits(sample_workspace_template, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, ws)
    with pytest.raises(StageError, match="build-splits"):
        corrupt_workspace(Workspace.load(ws), [resolve("fog", 1)], progress=False)
