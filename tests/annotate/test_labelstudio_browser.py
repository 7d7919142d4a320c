"""The describe config in headless Chromium (Debian's chromium, driven by Playwright): a real task renders with its
keyframe and pre-drawn boxes, an expression typed for one box is submitted, and `refava annotate pull` brings it back.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from .conftest import ADMIN, TOKEN

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
pytestmark = pytest.mark.slow


def test_an_expression_typed_in_the_browser_comes_back_through_pull(server, sample_workspace_template):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs `pip install playwright` (the test extra)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`apt-get install chromium`; .ci/run does)")
    url, base = server
    ws = base / "ws-browser"
    shutil.copytree(sample_workspace_template, ws)
    env = {**os.environ, "LABEL_STUDIO_API_KEY": TOKEN, "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(base)}

    def refava(*args):
        proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=ws, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    out = refava("annotate", "push", "--stage", "describe", "--url", url)
    project = int(out.split("project ")[1].split(",")[0])
    from refava.annotate.labelstudio import Client

    task = Client(url, TOKEN).tasks(project)[0]
    text = "the girl in a green top on the far left"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/user/login/")
            page.fill("input[name=email]", ADMIN[0])
            page.fill("input[name=password]", ADMIN[1])
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            page.goto(f"{url}/projects/{project}/data?task={task['id']}")
            page.locator("[class*=outliner-item]").first.wait_for(timeout=60_000)
            image = page.locator("img[src*='local-files']").first
            image.wait_for(timeout=30_000)
            assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) > 0   # the keyframe loaded
            assert page.locator("[class*=outliner-item]").count() >= 1                     # pre-drawn boxes
            page.locator("[class*=outliner-item]").first.click()
            area = page.locator("textarea").first
            area.fill(text)
            area.press("Enter")
            page.get_by_role("button", name="Submit").click()
            page.wait_for_timeout(2500)
        finally:
            browser.close()
    out = refava("annotate", "pull", "--url", url)
    assert "1 new answers" in out
    rows = pq.read_table(ws / "tables" / "annotations.parquet").to_pylist()
    mine = [r for r in rows if r["ls_project_id"] == project and r["text"] == text]
    assert len(mine) == 1 and mine[0]["clip_id"] == task["data"]["clip_id"] and mine[0]["stage"] == "describe"
