"""refava stats: every figure is written, the HTML page embeds them, and expressions come from accepted rows."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import cv2


def run(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_stats_report_on_the_sample(sample_workspace_template, sample_corpus, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, ws)
    ann = sample_corpus / "annotations"
    run("annotate", "import", str(ann / "labelstudio_describe_export.json"), cwd=ws)
    run("annotate", "import", str(ann / "labelstudio_verify_export.json"), "--verify-map", str(ann / "labelstudio_verify_tasks.json"), cwd=ws)
    run("annotate", "check", cwd=ws)
    run("build-splits", cwd=ws)
    out = run("stats", cwd=ws)
    assert "7 figures" in out
    names = {"instances_per_split", "people_per_clip", "actions_per_split", "expression_length",
             "words_per_category", "word_cooccurrence", "gallery"}
    for name in names:
        img = cv2.imread(str(ws / "reports" / "stats" / f"{name}.png"))
        assert img is not None and img.shape[0] > 100 and img.std() > 5, name  # a real, non-blank picture
    page = (ws / "reports" / "stats.html").read_text()
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 7  # self-contained
    assert "http" not in page.split("<body>", 1)[1]
    assert "accepted expressions" in page


def test_stats_with_a_frame_store_missing_draws_the_rest_and_says_so(sample_workspace_template, sample_corpus,
                                                                      tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, ws)
    ann = sample_corpus / "annotations"
    for args in (["annotate", "import", str(ann / "labelstudio_describe_export.json")],
                 ["annotate", "import", str(ann / "labelstudio_verify_export.json"), "--verify-map", str(ann / "labelstudio_verify_tasks.json")], ["annotate", "check"],
                 ["build-splits"]):
        run(*args, cwd=ws)
    stores = sorted((ws / "frames" / "clean").glob("*.parquet"))
    for store in stores[:-1]:                  # every store but one is gone (e.g. frames kept on another disk)
        store.unlink()
    out = run("stats", cwd=ws)
    assert "7 figures" in out
    page = (ws / "reports" / "stats.html").read_text()
    assert "could not be drawn: their clip has no stored keyframe" in page
