"""A real Label Studio server for the tests of this folder (started once, stopped at the end)."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "labelstudio.sh"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
ADMIN = ("admin@refava.local", "refava-admin-pass")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    venv = Path(os.environ.get("LS_VENV", ROOT / ".lsvenv"))
    if not (venv / "bin" / "label-studio").exists():
        pytest.skip("Label Studio is not installed: run `tools/labelstudio.sh install` (make test does)")
    base = tmp_path_factory.mktemp("ls")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LS_PORT": str(port), "LS_VENV": str(venv), "LABEL_STUDIO_USERNAME": ADMIN[0],
           "LABEL_STUDIO_PASSWORD": ADMIN[1], "LABEL_STUDIO_API_KEY": TOKEN}
    proc = subprocess.run([str(SCRIPT), "start", str(base / "data"), str(base)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield f"http://127.0.0.1:{port}", base
    subprocess.run([str(SCRIPT), "stop", str(base / "data")], env=env, capture_output=True, timeout=60)


