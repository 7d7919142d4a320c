"""SIGKILL at three points of each long stage (issue 17): no descendant process outlives the CLI by 10 s, the next
run leaves no temporary file, and its outputs equal an uninterrupted run's byte for byte."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_faults import refava, snapshot

POINTS = (0.25, 0.5, 0.8)          # kill after these fractions of the uninterrupted run's time


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def leftovers(ws: Path) -> list[str]:
    names = []
    for path in ws.rglob("*"):
        n = path.name
        if n.endswith(".tmp") or n.startswith((".refava.", ".commit")) or n.endswith(".staged.parquet"):
            names.append(str(path.relative_to(ws)))
    return names


def kill_at(ws: Path, args: list[str], after_s: float) -> set[int]:
    """Start ``refava ARGS`` in ``ws``, SIGKILL it after ``after_s`` seconds; return the descendants it had."""
    proc = subprocess.Popen([sys.executable, "-m", "refava", *args], cwd=ws, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + after_s
    seen: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        seen |= descendants(proc.pid)
        time.sleep(0.05)
    seen |= descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return seen


@pytest.fixture(scope="module")
def annotated(sample_workspace_template, tmp_path_factory):
    ws = tmp_path_factory.mktemp("kill") / "ws"
    shutil.copytree(sample_workspace_template, ws)
    from refava.workspace import Workspace

    exports = Path(Workspace.load(ws).config["ava"]["annotations"][0]).parent
    for args in (["annotate", "import", exports / "labelstudio_describe_export.json"],
                 ["annotate", "import", exports / "labelstudio_verify_export.json", "--verify-map", exports / "labelstudio_verify_tasks.json"],
                 ["annotate", "check"], ["build-splits"], ["package", "--no-progress"]):
        refava("-w", ws, *args, check=True)
    return ws


def _reingest(ws: Path) -> None:
    for path in (ws / "frames").rglob("*.parquet"):
        path.unlink()
    for name in ("movies", "instances", "clips"):
        (ws / "tables" / f"{name}.parquet").unlink()


STAGES = {
    # stage: (prepare the copy, the command, what must come out the same)
    "ingest": (_reingest, ["ingest", "--no-progress", "--workers", "2"], ["tables", "frames"]),
    "corrupt": (None, ["corrupt", "--type", "rain", "--type", "gaussian_noise", "--severity", "2", "--severity", "5",
                       "--split", "all", "--no-progress"], ["tables", "frames"]),
    # the codec types keep each clip's reference encode in cache/h264: it must come out the same too
    "corrupt_codec": (None, ["corrupt", "--type", "bit_error", "--type", "h264_abr", "--severity", "2", "--split",
                             "test", "--no-progress"], ["tables", "frames", "cache/h264"]),
    "package": (lambda ws: shutil.rmtree(ws / "refava"), ["package", "--no-progress"], ["refava"]),
    "train": (None, ["train", "--epochs", "6"], ["runs/refatomnet/metrics.json"]),
    "rephrase": (None, ["rephrase", "--test", "-n", "1", "--no-progress"], ["tables"]),
}


def outputs(ws: Path, names: list[str]) -> dict:
    out = {}
    for name in names:
        path = ws / name
        out.update({f"{name}/{k}": v for k, v in snapshot(path).items()} if path.is_dir() else {name: path.read_bytes()})
    return out


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_at_three_points_leaves_nothing_and_the_rerun_gives_the_same_bytes(annotated, tmp_path, stage):
    if stage == "rephrase":
        pytest.importorskip("llama_cpp", reason="needs the rephrase extra (llama-cpp-python[server])")
    if stage == "train":
        pytest.importorskip("torch")
    prepare, args, names = STAGES[stage]
    base = tmp_path / "base"
    shutil.copytree(annotated, base)
    if prepare:
        prepare(base)
    reference = tmp_path / "reference"
    shutil.copytree(base, reference)
    started = time.monotonic()
    refava(*args, cwd=reference, check=True, timeout=600)
    duration = time.monotonic() - started
    expected = outputs(reference, names)
    models = reference / "cache" / "models"
    for point in POINTS:
        ws = tmp_path / f"killed-{point}"
        shutil.copytree(base, ws)
        if models.exists():                     # the assembled model file: not the point here, and 270 MB
            shutil.copytree(models, ws / "cache" / "models")
        children = kill_at(ws, args, point * duration)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in children if alive(p)], f"{stage}: processes left after kill at {point}"
        refava(*args, cwd=ws, check=True, timeout=600)
        assert leftovers(ws) == [], f"{stage}: temporary files after the rerun (kill at {point})"
        got = outputs(ws, names)
        assert sorted(got) == sorted(expected), f"{stage}: other files after kill at {point}"
        differ = [k for k in expected if got[k] != expected[k]]
        assert not differ, f"{stage}: bytes differ after kill at {point}: {differ[:5]}"
        shutil.rmtree(ws)
