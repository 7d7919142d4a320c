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

    api = Client(url, TOKEN)
    tasks = api.tasks(project)
    people_in = {}
    for row in pq.read_table(ws / "tables" / "instances.parquet", columns=["clip_id"]).to_pylist():
        people_in[row["clip_id"]] = people_in.get(row["clip_id"], 0) + 1
    task = next(t for t in tasks if 2 <= people_in[t["data"]["clip_id"]] <= 3)
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
            items = page.locator(".lsf-outliner-item")                         # one per pre-drawn person
            people = people_in[task["data"]["clip_id"]]
            assert items.count() == people

            def describe(k: int, words: str) -> None:
                items.nth(k).click()
                inside = items.nth(k).locator("textarea")                      # the region list shows each text
                area = inside.first if inside.count() else page.locator("textarea").last
                area.fill(words)
                area.press("Enter")
                page.wait_for_timeout(300)

            describe(0, text)
            page.get_by_role("button", name="Submit").click()                 # one person still undescribed
            page.wait_for_timeout(2500)
            refused = api.call("GET", f"/api/tasks/{task['id']}")
            assert not refused.get("annotations"), "a task with an undescribed person was accepted"
            assert "needs an expression" in page.content() or "required" in page.content().lower()
            page.wait_for_timeout(800)                                            # the warning's animation
            ok = page.get_by_role("button", name="OK")
            if ok.count() and ok.first.is_visible():
                ok.first.click(force=True)
            page.wait_for_timeout(800)
            for k in range(1, people):
                describe(k, f"the person number {k + 1} in a {['red', 'blue', 'black', 'white', 'grey'][k % 5]} coat")
            page.get_by_role("button", name="Submit").click()
            page.wait_for_timeout(2500)
            # the guidelines are the project's instructions, shown in the labelling view
            page.goto(f"{url}/projects/{project}/data?labeling=1")
            page.wait_for_timeout(3000)
            assert "RefAVA annotation guidelines" in page.content()
        finally:
            browser.close()
    out = refava("annotate", "pull", "--url", url)
    assert "1 new answers" not in out and f"{people} new answers" in out, out
    rows = pq.read_table(ws / "tables" / "annotations.parquet").to_pylist()
    mine = [r for r in rows if r["ls_project_id"] == project and r["text"] == text]
    assert len(mine) == 1 and mine[0]["clip_id"] == task["data"]["clip_id"] and mine[0]["stage"] == "describe"
