"""The command line, run as a user runs it: a real subprocess for the pipeline, CliRunner for quick checks."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from refava.cli import cli

COMMANDS = ["init", "status", "sample-corpus", "download", "ingest"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert len(result.output.splitlines()) > 5


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, time; t = time.perf_counter(); from refava.cli import cli; "
            "heavy = [m for m in ('pyarrow', 'av', 'cv2', 'pandas', 'torch', 'datasets') if m in sys.modules]; "
            "print(heavy, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, seconds = out.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(seconds) < 1.0


def refava(*args, cwd, env=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "REFAVA_WORKSPACE": "", **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"refava {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_pipeline_from_the_command_line(tmp_path, sample_corpus):
    refava("init", "ws", "--from-sample", str(sample_corpus), cwd=tmp_path)
    ws = tmp_path / "ws"
    assert "missing" in refava("status", cwd=ws).stdout
    out = refava("ingest", "--no-progress", cwd=ws).stdout
    assert "86 clips" in out and "reports/ingest.json" in out
    status = json.loads(refava("status", "--json", cwd=ws).stdout)
    assert status["stages"][0]["state"] == "done"
    assert "nothing to do" in refava("ingest", cwd=ws / "tables").stdout
    # changing a parameter makes the stage stale, and the override reruns it
    text = (ws / "refava.toml").read_text().replace("frames = 8", "frames = 4")
    (ws / "refava.toml").write_text(text)
    assert "stale" in refava("status", cwd=ws).stdout


def test_errors_exit_non_zero_with_a_message(tmp_path):
    proc = refava("status", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "WorkspaceNotFoundError" in proc.stderr and "refava init" in proc.stderr
    assert "Traceback" not in proc.stderr
    refava("init", "ws", cwd=tmp_path)
    proc = refava("ingest", cwd=tmp_path / "ws", check=False)
    assert proc.returncode != 0 and "no annotation files" in proc.stderr
    proc = refava("-w", str(tmp_path / "ws"), "ingest", "--frames", "many", check=False, cwd=tmp_path)
    assert proc.returncode != 0 and "'many'" in proc.stderr


def test_strict_ingest_exits_non_zero(tmp_path, sample_corpus):
    bad = tmp_path / "gt.csv"
    rows = (sample_corpus / "annotations" / "ava_sample_v2.2.csv").read_text()
    bad.write_text(rows + "smpl00g7Wr4,0005,0.9,0.1,0.2,0.8,12,7\n")
    refava("init", "ws", "--movies-dir", str(sample_corpus / "movies"), "--annotations", str(bad), cwd=tmp_path)
    proc = refava("ingest", "--strict", "--no-progress", cwd=tmp_path / "ws", check=False)
    assert proc.returncode != 0
    assert "invalid_box" in proc.stdout + proc.stderr and "StrictModeError" in proc.stderr
    assert (tmp_path / "ws" / "tables" / "clips.parquet").exists()


def test_download_command_without_a_workspace(tmp_path):
    from test_download import FILES, Server

    listing = tmp_path / "list.txt"
    listing.write_text("abc.webm\n")
    with Server(FILES) as srv:
        proc = refava("download", "--file-list", str(listing), "--out", str(tmp_path / "m"), "--base-url", srv.url,
                      "--no-progress", cwd=tmp_path)
    assert "1 downloaded" in proc.stdout
    assert (tmp_path / "m" / "abc.webm").read_bytes() == FILES["abc.webm"]
    proc = refava("download", "--file-list", str(listing), "--out", str(tmp_path / "m2"), "--base-url",
                  "http://127.0.0.1:9", "--retries", "0", "--no-progress", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "1 of 1 downloads failed" in proc.stderr
