"""Real Label Studio servers for the tests of this folder (started once, stopped at the end), and Chromium."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "labelstudio.sh"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
VERIFY_TOKEN = "76543210fedcba9876543210fedcba9876543210"
ADMIN = ("admin@refava.local", "refava-admin-pass")
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


def _start(tmp_path_factory, name: str, token: str, root: Path | None = None):
    venv = Path(os.environ.get("LS_VENV", ROOT / ".lsvenv"))
    if not (venv / "bin" / "label-studio").exists():
        pytest.skip("Label Studio is not installed: run `tools/labelstudio.sh install` (make test does)")
    base = tmp_path_factory.mktemp(name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LS_PORT": str(port), "LS_VENV": str(venv), "LABEL_STUDIO_USERNAME": ADMIN[0],
           "LABEL_STUDIO_PASSWORD": ADMIN[1], "LABEL_STUDIO_API_KEY": token}
    proc = subprocess.run([str(SCRIPT), "start", str(base / "data"), str(root or base)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return f"http://127.0.0.1:{port}", base, env


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    url, base, env = _start(tmp_path_factory, "ls", TOKEN)
    yield url, base
    subprocess.run([str(SCRIPT), "stop", str(base / "data")], env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def verify_server(server, tmp_path_factory):
    """A second server for the verify stage, with its own admin token; it serves files from the same folder as the
    first one (the workspaces live there)."""
    url, base, env = _start(tmp_path_factory, "ls-verify", VERIFY_TOKEN, root=server[1])
    yield url, base
    subprocess.run([str(SCRIPT), "stop", str(base / "data")], env=env, capture_output=True, timeout=60)


@pytest.fixture
def chromium():
    """Debian's Chromium driven by Playwright; closed at the end."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs `pip install playwright` (the test extra)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`apt-get install chromium`; .ci/run does)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_up(browser, url: str, admin_token: str, email: str, password: str):
    """A new account made the way an annotator joins: the lead's invite link, opened in Chromium. Returns the
    logged-in page."""
    from refava.annotate.labelstudio import Client

    invite = Client(url, admin_token).call("GET", "/api/invite")["invite_url"]
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.goto(url + invite)
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/user/signup" not in page.url and "/user/login" not in page.url, f"{email} could not sign up"
    return page


def user_id(url: str, admin_token: str, email: str) -> int:
    from refava.annotate.labelstudio import Client

    return next(i for i, e in Client(url, admin_token).users().items() if e == email)
