"""Issue 21: the packaged dataset where researchers' tools expect it (Hugging Face and PyTorch ergonomics, the
official scorer, AVA and COCO exports, the browser)."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from refava.tables import read_table, write_table


def run(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "refava", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def _rephrasings(ws: Path) -> list[dict]:
    """Two accepted rephrasings per validation and test instance, written as `refava rephrase` writes them."""
    splits = {r["instance_id"]: r["split"] for r in read_table("splits", ws / "tables" / "splits.parquet").to_pylist()}
    status = read_table("annotation_status", ws / "tables" / "annotation_status.parquet").to_pylist()
    rows = []
    for r in sorted(status, key=lambda r: r["instance_id"]):
        if splits.get(r["instance_id"]) in ("val", "test") and r.get("expression"):
            for index in range(2):
                rows.append({"instance_id": r["instance_id"], "index": index, "original": r["expression"],
                             "text": f"{r['expression']} (version {index})", "rejected_text": None, "status": "ok",
                             "reasons": [], "attempts": 1, "backend": "base_url", "model": "test",
                             "template_id": "t", "template_sha256": "0" * 64, "temperature": 0.0, "seed": 0,
                             "prompt_tokens": 1, "completion_tokens": 1})
    return rows


@pytest.fixture(scope="module")
def dataset(sample_workspace_template, sample_corpus, tmp_path_factory):
    """The sample workspace with its annotations, splits, rephrasings, fog on the test split, and its packaged
    dataset."""
    ws = tmp_path_factory.mktemp("interop") / "ws"
    shutil.copytree(sample_workspace_template, ws)
    ann = sample_corpus / "annotations"
    for args in (["annotate", "import", str(ann / "labelstudio_describe_export.json")],
                 ["annotate", "import", str(ann / "labelstudio_verify_export.json"), "--verify-map", str(ann / "labelstudio_verify_tasks.json")],
                 ["annotate", "check"], ["build-splits"]):
        proc = run(*args, cwd=ws)
        assert proc.returncode == 0, proc.stderr
    write_table("rephrasings", _rephrasings(ws), ws / "tables" / "rephrasings.parquet")
    for args in (["corrupt", "--type", "fog", "--severity", "3", "--split", "test", "--no-progress"],
                 ["package", "--no-progress"]):
        proc = run(*args, cwd=ws)
        assert proc.returncode == 0, proc.stderr
    return ws


def _load(folder: Path, cache: Path, config: str = "default"):
    import datasets

    return datasets.load_dataset(str(folder), config, cache_dir=str(cache))


# --- 1. Hugging Face ergonomics -----------------------------------------------------------------------------------

def test_default_dataloader_iterates_the_default_configuration(dataset, tmp_path):
    import torch

    ds = _load(dataset / "refava", tmp_path / "cache")
    train = ds["train"]
    # the columns PyTorch's default collate stacks: everything fixed-size, and the strings
    loader = torch.utils.data.DataLoader(
        train.with_format("torch", columns=["labels", "box", "box_px", "keyframe_index", "expression",
                                            "instance_id"]), batch_size=4)
    rows = 0
    for batch in loader:
        assert batch["labels"].shape[1:] == (80,) and batch["labels"].dtype == torch.float32
        assert batch["box"].shape[1:] == (4,) and batch["keyframe_index"].dtype == torch.int32 or \
            batch["keyframe_index"].dtype == torch.int64
        assert len(batch["expression"]) == batch["labels"].shape[0]
        rows += batch["labels"].shape[0]
    assert rows == len(train)
    # labels is actions as a multi-hot vector; box_px is box in pixels of the stored keyframe
    for row in train.select(range(min(12, len(train)))):
        assert [i for i, v in enumerate(row["labels"]) if v] == sorted(row["actions"])
        w, h = row["keyframe"].size
        assert (row["keyframe_width"], row["keyframe_height"]) == (w, h)
        assert row["box_px"] == pytest.approx([row["box"][0] * w, row["box"][1] * h, row["box"][2] * w,
                                               row["box"][3] * h], rel=1e-5)
        times = row["frame_times_s"]
        k = row["keyframe_index"]
        assert 0 <= k < len(row["frames"]) == len(times)
        assert abs(times[k] - row["keyframe_time_s"]) == min(abs(t - row["keyframe_time_s"]) for t in times)


def test_rephrasings_only_in_the_configurations_that_hold_them(dataset, tmp_path):
    import datasets

    names = datasets.get_dataset_config_names(str(dataset / "refava"))
    assert {"default", "annotations_only", "rephrased", "test_fog_s3"} <= set(names)
    for name in names:
        ds = _load(dataset / "refava", tmp_path / "cache", name)
        for split, d in ds.items():
            assert ("rephrasings" in d.features) == (name == "rephrased"), (name, split)
            if name == "rephrased":
                assert all(len(r) == 2 for r in d["rephrasings"])
    card = (dataset / "refava" / "README.md").read_text()
    assert "## License" in card and "https://creativecommons.org/licenses/by/4.0/" in card
    assert "streaming=True" in card and "torch.utils.data.DataLoader" in card


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A Hub that refuses every token."""

    def _refuse(self):
        body = b'{"error": "Invalid credentials in Authorization header"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args):
        pass


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_push_to_hub_failures_are_messages_not_tracebacks(dataset, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home = {"HF_HOME": str(tmp_path / "hf")}
    try:
        cases = [
            ({"HF_TOKEN": "hf_fake", "HF_HUB_OFFLINE": "0",
              "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}"}, "me/refava", "refused the token"),
            ({"HF_TOKEN": "hf_fake", "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"},
             "me/refava", "no connection"),
            ({"HF_TOKEN": "hf_fake", "HF_HUB_OFFLINE": "1"}, "me/refava", "HF_HUB_OFFLINE"),
            ({"HF_TOKEN": "hf_fake", "HF_HUB_OFFLINE": "0"}, "not a repo!", "not a Hugging Face repository id"),
            ({"HF_TOKEN": "", "HF_HUB_OFFLINE": "0"}, "me/refava", "no Hugging Face token"),
        ]
        for env, repo, expected in cases:
            proc = run("package", "--no-progress", "--push-to-hub", repo, cwd=dataset, env={**home, **env})
            assert proc.returncode != 0, (env, proc.stdout)
            assert "Traceback" not in proc.stderr and expected in proc.stderr, (env, proc.stderr[-2000:])
            assert "push again" in proc.stderr or "expected NAMESPACE/NAME" in proc.stderr
    finally:
        server.shutdown()
        server.server_close()


# --- 3. the official scorer ------------------------------------------------------------------------------------

def _truth(folder: Path, split: str = "test"):
    from refava.scorer import load_ground_truth

    return load_ground_truth(folder, split)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_scorer_gives_100_for_the_truth_and_prevalence_for_constant_scores(dataset, tmp_path):
    folder = dataset / "refava"
    gt = _truth(folder)
    assert len(gt.ids) > 10 and gt.labels.shape == (len(gt.ids), 80)
    perfect = _jsonl(tmp_path / "perfect.jsonl", [
        {"instance_id": i, "scores": gt.labels[n].astype(float).tolist(), "box": gt.boxes[n].tolist()}
        for n, i in enumerate(gt.ids)][::-1])                                # order does not matter
    proc = run("evaluate", "--predictions", str(perfect), "--split", "test", "--dataset", str(folder), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "perfect.test.metrics.json").read_text())
    assert str(tmp_path / "perfect.test.metrics.json") in proc.stdout
    assert metrics["map_macro"] == pytest.approx(100) and metrics["map_weighted"] == pytest.approx(100)
    assert metrics["auroc_macro"] == pytest.approx(100) and metrics["miou"] == pytest.approx(100)
    assert metrics["map_macro_iou0.5"] == pytest.approx(100) and metrics["instances"] == len(gt.ids)
    assert {"map_macro_person_movement", "map_macro_object_manipulation", "map_macro_person_interaction"} <= set(
        metrics)
    # constant scores: every class's AP is its prevalence in the split; csv, columns by action name, shuffled
    import csv

    order = list(reversed(gt.names))
    constant = tmp_path / "constant.csv"
    with open(constant, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["instance_id", *order])
        for i in gt.ids:
            w.writerow([i, *([0.5] * 80)])
    out = tmp_path / "m" / "metrics.json"
    proc = run("evaluate", "--predictions", str(constant), "--split", "test", "--dataset", str(folder),
               "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    per_class = json.loads(out.read_text())["ap_per_class"]
    prevalence = gt.labels.mean(axis=0)
    assert per_class and per_class == pytest.approx(
        {name: 100 * prevalence[c] for c, name in enumerate(gt.names) if prevalence[c] > 0})
    # csv in ClassLabel order with boxes equals the JSON lines file
    ordered = tmp_path / "perfect.csv"
    with open(ordered, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["instance_id", *[f"score_{c}" for c in range(80)], "x1", "y1", "x2", "y2"])
        for n, i in enumerate(gt.ids):
            w.writerow([i, *gt.labels[n].astype(float), *gt.boxes[n]])
    proc = run("evaluate", "--predictions", str(ordered), "--dataset", str(folder), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    again = json.loads((tmp_path / "perfect.test.metrics.json").read_text())
    assert {k: v for k, v in again.items() if k != "predictions"} == {
        k: v for k, v in metrics.items() if k != "predictions"}


def test_scorer_refuses_missing_duplicate_unknown_and_non_finite(dataset, tmp_path):
    folder = dataset / "refava"
    gt = _truth(folder)
    good = [{"instance_id": i, "scores": [0.1] * 80} for i in gt.ids]
    cases = {
        "missing": (good[1:], [f"1 of {len(gt.ids)} instance(s)", gt.ids[0], "have no prediction"]),
        "duplicate": (good + good[:1], ["predicted twice", gt.ids[0], f"duplicate.jsonl:{len(good) + 1}"]),
        "unknown": (good + [{"instance_id": "nope___0001___1", "scores": [0.1] * 80}],
                    ["not in", "nope___0001___1"]),
        "nan": ([*good[:2], {"instance_id": good[2]["instance_id"], "scores": [float("nan")] + [0.1] * 79},
                 *good[3:]], ["nan.jsonl:3", "finite"]),
        "short": ([{"instance_id": gt.ids[0], "scores": [0.1] * 79}, *good[1:]], ["expected 80 scores", "79"]),
        "boxes": ([{**good[0], "box": [0, 0, 1, 1]}, *good[1:]], ["have a box", "for every instance or for none"]),
    }
    for name, (rows, expected) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
        proc = run("evaluate", "--predictions", str(path), "--dataset", str(folder), cwd=tmp_path)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, (name, proc.stderr[-1500:])
        for text in expected:
            assert text in proc.stderr, (name, text, proc.stderr)
        assert not (tmp_path / f"{name}.test.metrics.json").exists()
    proc = run("evaluate", "--predictions", str(tmp_path / "missing.jsonl"), "--split", "train", "--dataset",
               str(folder / "data"), cwd=tmp_path)
    assert proc.returncode != 0 and "not a packaged RefAVA dataset" in proc.stderr


# --- 4. exports -------------------------------------------------------------------------------------------------

def test_ava_export_round_trips_through_refavas_own_ava_reader(dataset, tmp_path):
    import numpy as np

    from refava.export import read_ava_export

    out = tmp_path / "ava"
    proc = run("export", "--format", "ava", "--out", str(out), cwd=dataset)
    assert proc.returncode == 0, proc.stderr
    assert f"export: {out.resolve()}" in proc.stdout
    ds = _load(dataset / "refava", tmp_path / "cache")
    ids = ds["train"].features["actions"].feature.names
    from refava.ava import load_label_map

    label_map = load_label_map(out / "annotations" / "ava_action_list_v2.2.pbtxt")
    assert [label_map[i].name for i in sorted(label_map)] == ids            # the pbtxt reads back, same order
    for split, ava in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = ds[split]
        back = {i.instance_id: i for i in read_ava_export(out, split)}
        assert set(back) == set(rows["instance_id"]), split
        for row in rows.remove_columns(["keyframe", "frames"]):
            inst = back[row["instance_id"]]
            assert inst.video_id == row["video_id"] and inst.timestamp == row["keyframe_s"]
            assert inst.person_id == row["person_id"]
            assert np.float32(inst.box_xyxy).tolist() == np.float32(row["box"]).tolist()    # the stored float32s
            assert sorted(label_map[a].name for a in inst.action_ids) == sorted(ids[a] for a in row["actions"])
        # the side table and the frame list
        side = {r["instance_id"]: r for r in __import__("csv").DictReader(
            open(out / "annotations" / f"refava_{ava}_expressions.csv", newline="", encoding="utf-8"))}
        assert {i: side[i]["expression"] for i in side} == dict(zip(rows["instance_id"], rows["expression"]))
        lines = (out / "frame_lists" / f"{ava}.csv").read_text().splitlines()
        assert lines[0] == "original_vido_id video_idx frame_id path labels"
        for p, line in enumerate(lines[1:]):
            video, _, frame, path, labels = line.split(" ")
            assert (out / path).read_bytes()[:2] == b"\xff\xd8" and labels == '""'
            assert int(frame) == p - sum(1 for x in lines[1:p + 1] if x.split(" ")[0] != video)   # per video
    # rerun into the same folder: replaced, nothing left behind; a foreign folder is refused untouched
    assert run("export", "--format", "ava", "--out", str(out), cwd=dataset).returncode == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    proc = run("export", "--format", "ava", "--out", str(foreign), cwd=dataset)
    assert proc.returncode != 0 and "refava did not write it" in proc.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_coco_export_loads_in_pycocotools_and_finds_every_box(dataset, tmp_path):
    from PIL import Image
    from pycocotools.coco import COCO

    out = tmp_path / "coco"
    proc = run("export", "--format", "coco", "--dataset", str(dataset / "refava"), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ds = _load(dataset / "refava", tmp_path / "cache")
    rephrased = _load(dataset / "refava", tmp_path / "cache", "rephrased")
    for split, name in (("train", "train"), ("validation", "val"), ("test", "test")):
        coco = COCO(str(out / f"refava_{name}.json"))
        data = json.loads((out / f"refava_{name}.json").read_text())
        refs = {r["instance_id"]: r for r in data["refs"]}
        rows = ds[split].remove_columns(["frames"])
        assert len(refs) == len(rows) == len(coco.getAnnIds())
        texts = dict(zip(rephrased[split]["instance_id"], rephrased[split]["rephrasings"])) if split != "train" else {}
        for row in rows:
            ref = refs[row["instance_id"]]
            ann = coco.loadAnns(ref["ann_id"])[0]
            image = coco.loadImgs(ann["image_id"])[0]
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w, y + h] == pytest.approx(row["box_px"], abs=1e-3)
            assert (image["width"], image["height"]) == row["keyframe"].size
            with Image.open(out / image["file_name"]) as im:
                assert im.size == row["keyframe"].size
            assert [s["raw"] for s in ref["sentences"]] == [row["expression"], *texts.get(row["instance_id"], [])]
            assert ann["image_id"] in coco.getImgIds() and ref["ann_id"] in coco.getAnnIds(imgIds=[ann["image_id"]])


# --- 2. the fast loader ------------------------------------------------------------------------------------------

def test_fast_loader_gives_datasets_pixels_and_batches_in_a_dataloader(dataset, tmp_path):
    import numpy as np
    import torch

    from refava.loader import LoaderError, RefAVAFrames, collate

    folder = dataset / "refava"
    ds = _load(folder, tmp_path / "cache")["validation"]
    data = RefAVAFrames(folder, split="val")
    assert len(data) == len(ds)
    for i in (0, len(ds) // 2, len(ds) - 1):
        ours, theirs = data[i], ds[i]
        assert ours["instance_id"] == theirs["instance_id"] and ours["expression"] == theirs["expression"]
        assert np.array_equal(ours["keyframe"].numpy(), np.asarray(theirs["keyframe"].convert("RGB")))
        assert len(ours["frames"]) == len(theirs["frames"])
        for a, b in zip(ours["frames"], theirs["frames"]):
            assert np.array_equal(a.numpy(), np.asarray(b.convert("RGB")))
        assert ours["labels"].tolist() == theirs["labels"] and int(ours["keyframe_index"]) == theirs["keyframe_index"]
    # in a DataLoader, resized: fixed shapes stack
    loader = torch.utils.data.DataLoader(RefAVAFrames(folder, split="train", size=64), batch_size=4, shuffle=True,
                                         collate_fn=collate, generator=torch.Generator().manual_seed(0))
    seen = 0
    for batch in loader:
        b = batch["labels"].shape[0]
        assert batch["frames"].shape == (b, 8, 64, 64, 3) and batch["frames"].dtype == torch.uint8
        assert batch["keyframe"].shape == (b, 64, 64, 3) and batch["labels"].shape == (b, 80)
        assert len(batch["instance_id"]) == b
        seen += b
    assert seen == len(RefAVAFrames(folder, split="train", pixels=False))
    # shuffled batches at the stored size: every row's pixels are its own (the people of a clip share them)
    train = _load(folder, tmp_path / "cache")["train"]
    row_of = {iid: n for n, iid in enumerate(train["instance_id"])}
    loader = torch.utils.data.DataLoader(RefAVAFrames(folder, split="train"), batch_size=8, shuffle=True,
                                         collate_fn=collate, generator=torch.Generator().manual_seed(1))
    batch = next(iter(loader))
    for k, iid in enumerate(batch["instance_id"]):
        theirs = train[row_of[iid]]
        assert np.array_equal(batch["keyframe"][k].numpy(), np.asarray(theirs["keyframe"].convert("RGB")))
        assert np.array_equal(batch["frames"][k][-1].numpy(), np.asarray(theirs["frames"][-1].convert("RGB")))
    # DataLoader workers started with spawn get the dataset pickled: small (no JPEG inside), and the same rows
    import pickle

    data = RefAVAFrames(folder, split="validation")
    jpeg_bytes = data.data.data.table.select(["keyframe", "frames"]).nbytes
    assert len(pickle.dumps(data)) < jpeg_bytes / 10, (len(pickle.dumps(data)), jpeg_bytes)
    spawned = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2, collate_fn=collate,
                                          multiprocessing_context="spawn")
    first = list(spawned)[0]                  # iterated to the end: the workers shut down cleanly
    assert first["instance_id"] == [data[i]["instance_id"] for i in range(4)]
    assert torch.equal(first["keyframe"], torch.stack([data[i]["keyframe"] for i in range(4)]))
    with pytest.raises(LoaderError, match="no split"):
        RefAVAFrames(folder, split="nope")
    with pytest.raises(LoaderError, match="not a packaged RefAVA dataset"):
        RefAVAFrames(tmp_path, split="train")


# --- 5. the browser -----------------------------------------------------------------------------------------------

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


def test_browser_filters_and_draws_boxes_in_chromium(dataset):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs `pip install playwright` (the test extra)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`apt-get install chromium`; .ci/run does)")
    proc = run("browse", "--no-progress", cwd=dataset)
    assert proc.returncode == 0, proc.stderr
    site = dataset / "reports" / "browse"
    assert f"open: {site / 'index.html'}" in proc.stdout
    instances = read_table("instances", dataset / "tables" / "instances.parquet").to_pylist()
    splits = {r["instance_id"]: r["split"] for r in read_table("splits", dataset / "tables" / "splits.parquet").to_pylist()}
    status = {r["instance_id"]: r for r in
              read_table("annotation_status", dataset / "tables" / "annotation_status.parquet").to_pylist()}
    by_id = {i["instance_id"]: i for i in instances}
    test_ids = {i for i, s in splits.items() if s == "test"}
    from refava.ava import default_label_map

    names = {a: c.name for a, c in default_label_map().items()}
    walk = [i["instance_id"] for i in instances if any(names[a] == "walk" for a in i["action_ids"])]
    assert walk
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto((site / "index.html").as_uri())
            page.wait_for_selector(".row")
            assert page.inner_text("#count") == f"{len(instances)} of {len(instances)} instances"
            # filter by split: only test rows, each with its fog version beside the clean keyframe
            page.select_option("#f-split", "test")
            assert page.inner_text("#count").startswith(f"{len(test_ids)} of ")
            cards = page.query_selector_all(".row")
            assert cards and {c.get_attribute("data-id") for c in cards} <= test_ids
            assert "split=test" in page.evaluate("location.hash")
            for c in cards[:5]:
                tags = [v.get_attribute("data-tag") for v in c.query_selector_all(".view")]
                assert tags == ["clean", "fog_s3"], tags
            # the box is drawn where the instance is: compare its rectangle with the image's
            page.wait_for_function("Array.from(document.images).slice(0, 4).every(i => i.complete && i.naturalWidth)")
            for c in cards[:4]:
                inst = by_id[c.get_attribute("data-id")]
                for v in c.query_selector_all(".view"):
                    img, box = v.query_selector("img").bounding_box(), v.query_selector(".box").bounding_box()
                    x1, y1, x2, y2 = inst["box_xyxy"]
                    assert box["x"] == pytest.approx(img["x"] + x1 * img["width"], abs=1.5)
                    assert box["y"] == pytest.approx(img["y"] + y1 * img["height"], abs=1.5)
                    assert box["width"] == pytest.approx((x2 - x1) * img["width"], abs=1.5)
                    assert box["height"] == pytest.approx((y2 - y1) * img["height"], abs=1.5)
                text = c.inner_text()
                assert status[inst["instance_id"]]["expression"] in text and status[inst["instance_id"]]["status"] in text
            # action and status filters combine; a link with the filters in its hash opens the same view
            page.select_option("#f-split", "")
            page.select_option("#f-action", label="walk")
            assert page.inner_text("#count").startswith(f"{len(walk)} of ")
            accepted_walk = [i for i in walk if status.get(i, {}).get("status") == "accepted"]
            page.select_option("#f-status", "accepted")
            assert page.inner_text("#count").startswith(f"{len(accepted_walk)} of ")
            link = page.evaluate("location.href")
            other = browser.new_page()
            other.goto(link)
            other.wait_for_selector("#count")
            assert other.inner_text("#count") == page.inner_text("#count")
            # at RefAVA's size (36,630 rows) a filter still renders one page
            page.evaluate("""() => { const rows = window.REFAVA.rows, n = rows.length;
                for (let i = n; i < 36630; i++) { const r = rows[i % n].slice(); r[0] = r[0] + "_" + i; rows.push(r); } }""")
            page.select_option("#f-status", "")
            page.select_option("#f-action", "")
            assert page.inner_text("#count") == "36,630 of 36,630 instances"
            assert len(page.query_selector_all(".row")) == 48
            page.fill("#f-text", "red")
            ms = float(page.evaluate("document.body.dataset.renderMs"))
            print(f"filter + render over 36,630 rows: {ms:.0f} ms")
            assert len(page.query_selector_all(".row")) <= 48 and ms < 2000
        finally:
            browser.close()


# -- SlowFast reads the AVA export's frame lists (issue 29) ---------------------------------------------------------

def slowfast_clips(export: Path, ava_split: str, origin: int, num_frames: int = 32, sample_rate: int = 2) -> dict:
    """The frames SlowFast's AVA dataset reads for each keyframe of an AVA export, by SlowFast's own logic,
    transcribed from facebookresearch/SlowFast: ``slowfast/datasets/ava_helper.py`` (``load_image_lists``: a video's
    image paths in the order of its list's lines, header skipped, five space-separated fields;
    ``get_keyframe_data``: ``sec_to_frame(sec) = (sec - 900) * FPS``) and ``slowfast/datasets/utils.py``
    (``get_sequence``: ``range(center - half, center + half, rate)`` clamped to the list), as ``ava_dataset.py``
    calls it with ``seq_len = NUM_FRAMES * SAMPLING_RATE``.  ``origin`` stands for SlowFast's 900 (the export's
    origin: 0 for the sample's movies, which are annotated before 900 s).  Returns (video, second) -> (centre path,
    the clip's paths)."""
    image_paths: dict[int, list[str]] = {}
    name_to_idx: dict[str, int] = {}
    with open(export / "frame_lists" / f"{ava_split}.csv") as f:
        f.readline()
        for line in f:
            row = line.split()
            assert len(row) == 5
            idx = name_to_idx.setdefault(row[0], len(name_to_idx))
            image_paths.setdefault(idx, []).append(str(export / row[3]))
    seconds: dict[str, set] = {}
    with open(export / "annotations" / f"ava_{ava_split}_v2.2.csv") as f:
        for line in f:
            row = line.strip().split(",")
            seconds.setdefault(row[0], set()).add(int(row[1]))
    clips = {}
    seq_len = num_frames * sample_rate
    for video, secs in seconds.items():
        paths = image_paths[name_to_idx[video]]
        for sec in sorted(secs):
            center = (sec - origin) * 30
            seq = list(range(center - seq_len // 2, center + seq_len // 2, sample_rate))
            seq = [min(max(i, 0), len(paths) - 1) for i in seq]
            clips[(video, sec)] = (paths[center], [paths[i] for i in seq])
    return clips


def _check_slowfast(export: Path, ds, dense: bool) -> None:
    record = json.loads((export / "refava-export.json").read_text())
    for split, ava in (("train", "train"), ("validation", "val"), ("test", "test")):
        if split not in ds:
            continue
        clips = slowfast_clips(export, ava, 0)                              # the sample: annotated before 900 s
        import datasets

        rows = ds[split].cast_column("keyframe", datasets.Image(decode=False))
        for row in rows.select_columns(["video_id", "keyframe_s", "keyframe", "keyframe_time_s", "frame_times_s"]):
            center, seq = clips[(row["video_id"], row["keyframe_s"])]
            # the keyframe's own movie frame: the keyframe image, or (dense) the sampled frame of that frame number
            number = int(round(row["keyframe_time_s"] * 30)) + 1
            assert Path(center).name == f"{row['video_id']}_{number:06d}.jpg", (row["video_id"], row["keyframe_s"])
            if "/keyframes/" in center:
                assert Path(center).read_bytes() == row["keyframe"]["bytes"]
            else:
                assert dense
            if dense and all(abs(t * 30 - round(t * 30)) < 1e-3 for t in row["frame_times_s"]):   # a 30 fps movie
                # every frame of the clip is the frame of its position's time: contiguous, none repeated
                numbers = [int(Path(p).stem.rsplit("_", 1)[1]) for p in seq]
                first = (row["keyframe_s"] * 30) - 32
                assert numbers == [max(first + 2 * k, 0) + 1 for k in range(32)], (row["video_id"], numbers)
        lines = (export / "frame_lists" / f"{ava}.csv").read_text().splitlines()
        assert all(line.endswith(' ""') for line in lines[1:])              # AVA's lists write labels as ""
        origins = {v: record["frame_lists"]["videos"][v]["origin_s"] for v in set(ds[split]["video_id"])}
        assert set(origins.values()) == {0}
    assert ("dense" if dense else "sparse") in record["frame_lists"]["note"]


def test_slowfast_reads_the_keyframe_from_sparse_frame_lists(dataset, tmp_path):
    """The sample's 8-frame clips: SlowFast's centre frame is the stored keyframe; the export says the lists are
    sparse (before issue 29 the lists started at the first stored frame and the pick landed 0.5 s late)."""
    out = tmp_path / "ava"
    proc = run("export", "--format", "ava", "--out", str(out), cwd=dataset)
    assert proc.returncode == 0, proc.stderr
    _check_slowfast(out, _load(dataset / "refava", tmp_path / "cache"), dense=False)
    assert "frame lists: sparse" in proc.stdout and "--frames all" in proc.stdout


def test_slowfast_reads_contiguous_clips_from_a_dense_export(sample_corpus, tmp_path):
    ws = tmp_path / "ws"
    for args, cwd in ((["init", str(ws), "--from-sample", str(sample_corpus)], tmp_path),
                      (["ingest", "--frames", "all", "--short-side", "64", "--keyframe-short-side", "128",
                        "--no-progress"], ws), (["build-splits"], ws), (["package", "--no-progress"], ws),
                      (["export", "--format", "ava"], ws)):
        proc = run(*args, cwd=cwd)
        assert proc.returncode == 0, proc.stderr[-2000:]
    _check_slowfast(ws / "exports" / "ava", _load(ws / "refava", tmp_path / "cache"), dense=True)
    assert "frame lists: dense" in proc.stdout


def test_frame_lists_of_a_movie_annotated_in_ava_s_range_start_at_900():
    from refava.export import _StoredFrames

    frames = _StoredFrames()
    for second in (902, 903):
        frames.keyframes[second] = (second * 30 + 1, f"k{second}")   # not among the sampled frames: the keyframe
        for k in (-45, -20, 1, 20, 44):
            frames.times[f"f{second}{k}"] = second + k / 30
    origin, paths = frames.positions()
    assert origin == 900 and paths[60] == "k902" and paths[90] == "k903"
    assert paths[0] == "f902-45" and len(paths) == (903 - 900) * 30 + 44 + 1
    assert paths[61] == "f9021" and paths[80] == "f90220"                 # the nearest stored frame fills the gaps
    frames.numbers[902 * 30 + 1] = "f902-same"                           # the keyframe's frame among the sampled ones
    assert frames.positions()[1][60] == "f902-same"


# -- WebDataset shards (issue 29) ----------------------------------------------------------------------------------

def _webdataset(dataset: Path, out: Path, *extra):
    proc = run("export", "--format", "webdataset", "--out", str(out), "--no-progress", *extra, cwd=dataset)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads((out / "refava-export.json").read_text())


def test_webdataset_shards_read_back_with_webdataset_and_datasets(dataset, tmp_path):
    """Every row, its JSON, keyframe and frames, read back by the webdataset library and by
    datasets.load_dataset("webdataset"): the same rows and pixels as the packaged dataset; shards of the chosen
    size whose manifest counts and checksums hold; keys in clip order; the same bytes with other worker counts."""
    import hashlib
    import io

    import datasets
    import numpy as np
    import webdataset as wds
    from PIL import Image

    out = tmp_path / "wds"
    proc, record = _webdataset(dataset / "refava", out, "--shard-size", "500KB", "--workers", "3")
    assert f"export: {out.resolve()}" in proc.stdout
    ds = _load(dataset / "refava", tmp_path / "cache")
    shards = record["shards"]["splits"]
    assert set(shards) == set(ds) and record["shards"]["shard_bytes"] == 500_000
    for split, entries in shards.items():
        raw = ds[split].cast_column("keyframe", datasets.Image(decode=False)).cast_column(
            "frames", datasets.Sequence(datasets.Image(decode=False)))
        rows = {r["instance_id"]: r for r in raw}
        assert sum(e["rows"] for e in entries) == len(rows)
        assert len(entries) > 1 or len(rows) < 20, entries                          # the size is honoured
        for e in entries:
            data = (out / e["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == e["sha256"] and len(data) == e["bytes"]
            assert e["bytes"] <= 500_000 or e["rows"] == 1
        urls = [str(out / e["path"]) for e in entries]
        keys, seen = [], set()
        for sample in wds.WebDataset(urls, shardshuffle=False):
            keys.append(sample["__key__"])
            row = json.loads(sample["json"])
            ours = rows[row["instance_id"]]
            seen.add(row["instance_id"])
            for name, value in row.items():
                if name == "rephrasings":
                    continue
                want = ours[name]
                assert (np.float32(value).tolist() == np.float32(want).tolist() if name in ("box", "box_px")
                        else value == want), (name, value, want)
            assert sample["keyframe.jpg"] == ours["keyframe"]["bytes"]
            assert [sample[f"frame{k:02d}.jpg"] for k in range(len(ours["frames"]))] == [
                f["bytes"] for f in ours["frames"]]
        assert seen == set(rows) and keys == sorted(keys)                        # every row, in clip order
        back = datasets.load_dataset("webdataset", data_files={split: urls}, split=split,
                                     cache_dir=str(tmp_path / "wds-cache"))
        assert len(back) == len(rows)
        for sample in back.select(range(0, len(back), 7)):
            ours = rows[sample["json"]["instance_id"]]
            assert sample["json"]["expression"] == ours["expression"]
            want = np.asarray(Image.open(io.BytesIO(ours["keyframe"]["bytes"])))
            assert np.array_equal(np.asarray(sample["keyframe.jpg"]), want)
    # rephrasings of the rephrased configuration travel in the JSON
    test_rows = [json.loads(s["json"]) for s in wds.WebDataset(
        [str(out / e["path"]) for e in shards["test"]], shardshuffle=False)]
    assert any(r["rephrasings"] for r in test_rows)
    # one worker or three: the same bytes
    again = tmp_path / "wds1"
    _, record1 = _webdataset(dataset / "refava", again, "--shard-size", "500KB", "--workers", "1")
    assert record1["shards"] == record["shards"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]      # no parts folder left


def test_a_killed_webdataset_export_resumes_from_its_finished_shards(dataset, tmp_path):
    import signal
    import time

    out = tmp_path / "wds"
    _, whole = _webdataset(dataset / "refava", tmp_path / "whole", "--shard-size", "100KB", "--workers", "1")
    args = [sys.executable, "-m", "refava", "export", "--format", "webdataset", "--out", str(out), "--shard-size",
            "100KB", "--workers", "1", "--no-progress"]
    parts = tmp_path / ".wds.parts"
    proc = subprocess.Popen(args, cwd=dataset, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(parts.rglob("*.tar.json"))) < 3 and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(parts.rglob("*.tar.json")))
    assert finished >= 3 and not out.exists(), "the export finished before it could be killed"
    proc = run(*args[3:], cwd=dataset)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming: {finished} shard(s)" in proc.stdout
    assert json.loads((out / "refava-export.json").read_text())["shards"] == whole["shards"]
    assert not parts.exists() and not list(tmp_path.rglob("*.tmp"))


# -- FiftyOne (issue 29): the real library and the real App, in FiftyOne's own environment -------------------------

FIFTYONE = Path(__file__).resolve().parents[1] / ".fovenv" / "bin" / "python"
FIFTYONE_APP = Path(__file__).resolve().parents[1] / "tools" / "fiftyone_app.py"


def _fiftyone_export(dataset: Path, out: Path) -> None:
    if not FIFTYONE.exists():
        pytest.skip("FiftyOne's environment is missing: `make fiftyone` (make test builds it)")
    proc = run("export", "--format", "fiftyone", "--out", str(out), cwd=dataset)
    assert proc.returncode == 0, proc.stderr


def test_fiftyone_imports_the_export_with_every_box_and_expression(dataset, tmp_path):
    """FiftyOne's own importer (fo.Dataset.from_dir, LegacyFiftyOneDataset) reads the export: one sample per
    keyframe with its split tag, every instance a detection with its box, expression, rephrasings, actions and
    verification, and the corrupted keyframes as media fields FiftyOne resolves."""
    import numpy as np

    out = tmp_path / "fo"
    _fiftyone_export(dataset, out)
    proc = subprocess.run([str(FIFTYONE), str(FIFTYONE_APP), str(out), "--dump"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    people = {d["refava_id"]: (s, d) for s in samples for d in s["people"]}
    ds = _load(dataset / "refava", tmp_path / "cache")
    rephrased = _load(dataset / "refava", tmp_path / "cache", "rephrased")
    rephrasings = {r["instance_id"]: r["rephrasings"] for split in rephrased
                   for r in rephrased[split].select_columns(["instance_id", "rephrasings"])}
    names = ds["train"].features["actions"].feature.names
    keyframes = set()
    for split in ds:
        for row in ds[split].select_columns(["instance_id", "video_id", "keyframe_s", "box", "expression",
                                             "actions", "verified"]):
            sample, det = people.pop(row["instance_id"])
            keyframes.add((row["video_id"], row["keyframe_s"]))
            x1, y1, x2, y2 = np.float32(row["box"]).astype(np.float64)
            assert np.allclose(det["bounding_box"], [x1, y1, x2 - x1, y2 - y1], atol=1e-6), det
            assert det["expression"] == row["expression"] and det["verified"] == row["verified"]
            assert det["rephrasings"] == rephrasings.get(row["instance_id"], [])
            assert det["actions"] == [names[a] for a in sorted(row["actions"])]
            assert sample["tags"] == [split] and sample["split"] == split and Path(sample["filepath"]).is_file()
            if split == "test":
                assert Path(sample["corrupted"]["keyframe_fog_s3"]).is_file()     # resolved by FiftyOne
    assert not people and len(samples) == len(keyframes)                           # every instance, once
    assert not list(tmp_path.glob("refava-fiftyone-db-*"))                          # the database is gone


def test_the_fiftyone_app_shows_the_samples_in_chromium(dataset, tmp_path):
    """The real App on 127.0.0.1 in headless Chromium: the RefAVA dataset with all its samples; ending the tool
    (SIGTERM) stops the App's server and the database and removes the database's folder."""
    import signal
    import socket
    import time

    from playwright import sync_api
    from test_kill import alive, descendants

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`apt-get install chromium`; .ci/run does)")
    out = tmp_path / "fo"
    _fiftyone_export(dataset, out)
    n = len(json.loads((out / "samples.json").read_text())["samples"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = subprocess.Popen([str(FIFTYONE), str(FIFTYONE_APP), str(out), "--port", str(port)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    seen: set[int] = set()
    try:
        for line in app.stdout:
            if "FiftyOne App on" in line:
                break
        else:
            pytest.fail("the FiftyOne App did not start")
        seen |= descendants(app.pid)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/datasets/refava", timeout=120_000)
                page.get_by_text(f"{n} samples").first.wait_for(timeout=120_000)
                assert "people" in page.inner_text("body")                          # the detections' field
            finally:
                browser.close()
        seen |= descendants(app.pid)
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=60)
    end = time.monotonic() + 15
    while any(alive(p) for p in seen) and time.monotonic() < end:
        time.sleep(0.2)
    assert app.returncode == 0 and not [p for p in seen if alive(p)], "a FiftyOne process outlived the tool"
    assert not list(tmp_path.glob("refava-fiftyone-db-*"))
