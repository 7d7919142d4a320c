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

import pyarrow.parquet as pq
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
                 ["annotate", "import", str(ann / "labelstudio_verify_export.json")],
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
