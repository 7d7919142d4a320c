"""Byte identity of the sample pipeline (issue 25): the tables, frame stores, packaged dataset and exports that the
sample corpus gives, as sha256 per file, so that moving code can be shown to change no data.

``tests/data/sample_digests.json`` holds the digests recorded before the stage-contract restructuring
(``python tests/identity.py --record``); ``tests/test_identity.py`` builds the same workspace and compares.

Each file is recorded twice: its bytes, and its content (for Parquet: the rows and the key-value metadata, which
do not depend on the writer's library version).  The bytes are compared when the libraries that write them
(pyarrow, av, simplejpeg, numpy, opencv) are the versions the record was made with; the content always.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
RECORD = HERE / "data" / "sample_digests.json"
# what the pipeline writes that must not change; reports hold wall-clock figures and are left out
COVERED = ("tables", "frames", "refava", "exports")
# bookkeeping the restructuring added to output folders (which files refava wrote there), not data
IGNORED = {".refava-output.json"}
MTIME_NS = 1_700_000_000 * 10**9
WRITERS = ("pyarrow", "av", "simplejpeg", "numpy", "opencv-python-headless", "datasets")


def writer_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in WRITERS}


def run(*args, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "refava", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                         "REFAVA_ANNOTATION_SECRET": "refava-identity"})
    if proc.returncode:
        raise AssertionError(f"refava {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")


def build_pipeline(ws: Path, sample: Path) -> None:
    """From an ingested sample workspace: annotations, check, splits, fog and rain on test, package, exports."""
    ann = sample / "annotations"
    for args in (["annotate", "import", ann / "labelstudio_describe_export.json"],
                 ["annotate", "import", ann / "labelstudio_verify_export.json", "--verify-map", ann / "labelstudio_verify_tasks.json"],
                 ["annotate", "check"], ["build-splits"],
                 ["corrupt", "--type", "fog", "--severity", "3", "--split", "test", "--no-progress"],
                 ["corrupt", "--type", "rain", "--severity", "2", "--split", "test", "--no-progress"],
                 ["package", "--no-progress"],
                 ["export", "--format", "ava"], ["export", "--format", "coco"]):
        run(*args, cwd=ws)


def _bytes(path: Path, ws: Path) -> bytes:
    """The file's bytes; in text files the workspace's own path is replaced (an export names its dataset)."""
    data = path.read_bytes()
    return data if path.suffix == ".parquet" else data.replace(str(ws).encode(), b"<WS>")


def _content(path: Path, ws: Path) -> str:
    if path.suffix != ".parquet" or path.name.startswith("."):
        return hashlib.sha256(_bytes(path, ws)).hexdigest()
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    h = hashlib.sha256()
    meta = table.schema.metadata or {}
    for key in sorted(meta):
        if key in (b"ARROW:schema",):
            continue
        h.update(key + b"\0" + meta[key] + b"\0")
    h.update(str(table.schema.remove_metadata()).encode())
    for name in table.column_names:
        h.update(name.encode())
        for chunk in table.column(name).chunks:
            h.update(repr(chunk.to_pylist()).encode())
    return h.hexdigest()


def digests(ws: Path) -> dict[str, dict[str, str]]:
    """relative path -> {"bytes": sha256, "content": sha256} of every file under the covered folders."""
    out = {}
    for folder in COVERED:
        base = ws / folder
        for path in sorted(base.rglob("*")) if base.is_dir() else []:
            if path.is_file() and path.name not in IGNORED:
                out[path.relative_to(ws).as_posix()] = {
                    "bytes": hashlib.sha256(_bytes(path, ws)).hexdigest(), "content": _content(path, ws)}
    return out


def make(tmp: Path) -> Path:
    """A fresh sample corpus and workspace under ``tmp``, through the whole pipeline; returns the workspace."""
    from refava.sample_corpus import make_sample_corpus

    sample = tmp / "sample"
    make_sample_corpus(sample, log=lambda *_: None)
    for path in sample.rglob("*"):          # ingest's provenance holds the movies' mtimes: fix them
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    ws = tmp / "ws"
    run("init", ws, "--from-sample", sample, cwd=tmp)
    run("ingest", "--no-progress", cwd=ws)
    build_pipeline(ws, sample)
    return ws


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/identity.py --record   (writes tests/data/sample_digests.json)")
    tmp = Path(tempfile.mkdtemp(prefix="refava-identity-"))
    try:
        ws = make(tmp)
        record = {"writers": writer_versions(), "files": digests(ws)}
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"{len(record['files'])} files recorded in {RECORD}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
