"""``refava evaluate --robustness`` (issue 28 item 4): mPC and rPC from a model's predictions on the clean test
split and on each corruption configuration equal a hand computation from the official scorer's per-setting scores."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "refava", *map(str, args)], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def corrupted(sample_workspace_template, sample_corpus, tmp_path_factory):
    ws = tmp_path_factory.mktemp("robust") / "ws"
    shutil.copytree(sample_workspace_template, ws)
    ann = sample_corpus / "annotations"
    for args in (["annotate", "import", ann / "labelstudio_describe_export.json"],
                 ["annotate", "import", ann / "labelstudio_verify_export.json", "--verify-map", ann / "labelstudio_verify_tasks.json"], ["annotate", "check"],
                 ["build-splits"],
                 ["corrupt", "--type", "fog", "--type", "brightness", "--severity", "1", "--severity", "4",
                  "--split", "test", "--no-progress"],
                 ["corrupt", "--type", "fog", "--preset", "paper", "--split", "test", "--no-progress"],
                 ["corrupt", "--type", "h264_crf", "--type", "box_jumble", "--severity", "2", "--split", "test",
                  "--no-progress"],                            # a type with digits in its name, a temporal one
                 ["package", "--no-progress"]):
        proc = run(*args, cwd=ws)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return ws


def _predict(gt, noise: float, seed: int, path: Path) -> None:
    """Scores that are the truth plus noise (more noise: worse), and boxes off by the noise."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for i, iid in enumerate(gt.ids):
            scores = np.clip(gt.labels[i] + rng.normal(0, noise, gt.labels.shape[1]), 0, 1)
            box = np.clip(gt.boxes[i] + rng.normal(0, noise / 10, 4), 0, 1)
            box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
            f.write(json.dumps({"instance_id": iid, "scores": scores.tolist(), "box": box}) + "\n")


def test_mpc_and_rpc_equal_a_hand_computation(corrupted, tmp_path):
    from refava.scorer import load_ground_truth, read_predictions, score

    data = corrupted / "refava"
    preds = tmp_path / "preds"
    preds.mkdir()
    gt = load_ground_truth(data, "test")
    _predict(gt, 0.2, 0, preds / "clean.jsonl")
    noise = {"test_fog_s1": 0.3, "test_fog_s4": 0.6, "test_brightness_s1": 0.25, "test_brightness_s4": 0.5,
             "test_fog_paper": 0.4, "test_h264_crf_s2": 0.35, "test_box_jumble_s2": 0.45}
    for k, (name, level) in enumerate(noise.items()):
        _predict(load_ground_truth(data, "test", name), level, k + 1, preds / f"{name}.jsonl")
    proc = run("evaluate", "--robustness", preds, "--split", "test", "--dataset", data, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((preds / "robustness.json").read_text())
    by_hand = {}
    for name in noise:
        g = load_ground_truth(data, "test", name)
        by_hand[name] = score(g, read_predictions(preds / f"{name}.jsonl", g.names))
    clean = score(gt, read_predictions(preds / "clean.jsonl", gt.names))
    settings = [n for n in noise if not n.endswith("paper")]                 # presets stay out of mPC
    for metric in ("map_macro", "auroc_macro", "miou"):
        mpc = float(np.mean([by_hand[n][metric] for n in settings]))
        assert report["summary"][metric]["mPC"] == pytest.approx(mpc, abs=1e-9)
        assert report["summary"][metric]["rPC"] == pytest.approx(mpc / clean[metric], abs=1e-9)
        assert report["summary"][metric]["clean"] == pytest.approx(clean[metric], abs=1e-9)
    assert report["per_type"]["fog"]["severities"]["4"]["map_macro"] == pytest.approx(by_hand["test_fog_s4"]["map_macro"])
    assert set(report["presets"]) == {"fog_paper"} and report["not_scored"] == []
    assert set(report["per_type"]) == {"fog", "brightness", "h264_crf", "box_jumble"}
    assert report["summary"]["map_macro"]["mPC"] < report["summary"]["map_macro"]["clean"]      # noise costs
    md = (preds / "robustness.md").read_text()
    assert "| map_macro |" in md and "| fog |" in md and "Presets (not in mPC)" in md
    assert (preds / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert "mPC" in proc.stdout and "rPC" in proc.stdout
    # a configuration without predictions is named, not averaged in silently
    (preds / "test_brightness_s4.jsonl").unlink()
    proc = run("evaluate", "--robustness", preds, "--split", "test", "--dataset", data, "--out", tmp_path / "r2",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not scored (no predictions): test_brightness_s4" in proc.stdout
    report = json.loads((tmp_path / "r2" / "robustness.json").read_text())
    assert report["summary"]["map_macro"]["mPC"] == pytest.approx(
        np.mean([by_hand[n]["map_macro"] for n in settings if n != "test_brightness_s4"]), abs=1e-9)


def test_robustness_without_clean_predictions_is_a_clear_error(corrupted, tmp_path):
    (tmp_path / "preds").mkdir()
    proc = run("evaluate", "--robustness", tmp_path / "preds", "--split", "test", "--dataset", corrupted / "refava",
               cwd=tmp_path)
    assert proc.returncode != 0 and "no predictions on the clean split" in proc.stderr


def test_the_demos_nearest_keyframe_model_reads_pixels_and_covers_every_configuration(corrupted, tmp_path):
    """tools/demo_scorer.py --robustness (what make demo scores): a file per configuration, and a corruption that
    changes pixels changes its scores."""
    data = corrupted / "refava"
    tool = Path(__file__).resolve().parents[1] / "tools" / "demo_scorer.py"
    proc = subprocess.run([sys.executable, tool, "--robustness", data, tmp_path / "knn"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run("evaluate", "--robustness", tmp_path / "knn", "--split", "test", "--dataset", data, "--out",
               tmp_path / "rep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "rep" / "robustness.json").read_text())
    assert report["not_scored"] == [] and {"fog", "brightness", "h264_crf", "box_jumble"} <= set(report["per_type"])
    clean = [json.loads(line)["scores"] for line in (tmp_path / "knn" / "clean.jsonl").read_text().splitlines()]
    fog = [json.loads(line)["scores"] for line in (tmp_path / "knn" / "test_fog_s4.jsonl").read_text().splitlines()]
    assert len(clean) == len(fog) and clean != fog
