"""The conformance suite (issue 25): every command through the same fault matrix.

ROWS has one row per command of the CLI (a command without its row fails ``test_every_command_has_a_row``), and
each row says, for every fault of FAULTS, either the case that checks it here, the test elsewhere that checks it
(``Elsewhere``: the suite checks that the test exists), or why the fault cannot apply to that command (``NA``).
FOUND maps each defect of issue 25's "Found" list to the cell that keeps it fixed.

The cases share one packaged sample workspace (built once per module) and work on copies of it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from test_faults import refava, snapshot
from test_kill import alive, descendants

TESTS = Path(__file__).resolve().parents[1]
FAULTS = {
    "foreign_out": "a non-empty output folder refava did not write is refused untouched",
    "user_files": "files of the user inside its output folder are kept",
    "read_only": "a read-only workspace: a writer refuses cleanly, a reader works",
    "full_disk": "a full disk: a clear message, nothing torn, nothing left, the rerun finishes",
    "sigkill": "SIGKILL mid-run, then a rerun: the same bytes, no temporary file, no process left",
    "hostile_inputs": "each input file in hostile forms: one clear line naming it, nothing lost",
    "second_writer": "a second writer at the same time is refused, naming the first; nothing changes",
}


@dataclass(frozen=True)
class NA:
    """The fault cannot apply to this command, and why."""
    reason: str


@dataclass(frozen=True)
class Elsewhere:
    """The fault is checked by another test (``tests/FILE.py::TEST``)."""
    test: str


# --- the shared workspace ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(sample_workspace_template, sample_corpus, tmp_path_factory) -> Path:
    """The sample workspace annotated, split, fog on the test split, packaged (never changed by a case)."""
    ws = tmp_path_factory.mktemp("conformance") / "ws"
    shutil.copytree(sample_workspace_template, ws)
    ann = sample_corpus / "annotations"
    for args in (["annotate", "import", ann / "labelstudio_describe_export.json"],
                 ["annotate", "import", ann / "labelstudio_verify_export.json", "--verify-map", ann / "labelstudio_verify_tasks.json"], ["annotate", "check"],
                 ["build-splits"], ["corrupt", "--type", "fog", "--severity", "3", "--split", "test", "--no-progress"],
                 ["package", "--no-progress"]):
        refava("-w", ws, *args, check=True)
    return ws


@dataclass
class Env:
    base: Path
    sample: Path
    tmp: Path

    def copy(self, name: str = "ws") -> Path:
        ws = self.tmp / name
        shutil.copytree(self.base, ws, symlinks=True)
        return ws


@pytest.fixture
def env(base, sample_corpus, tmp_path) -> Env:
    return Env(base, sample_corpus, tmp_path)


def ok(proc, *, code: int | None = 0) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    if code == 0:
        assert proc.returncode == 0, proc.stderr
    elif code is not None:
        assert proc.returncode != 0, proc.stdout + proc.stderr


def leftovers(root: Path) -> list[str]:
    """Temporary files and folders a run left (its own ``*.tmp``, swap folders, staged tables, lock files)."""
    out = []
    for path in root.rglob("*"):
        n = path.name
        if (n.endswith((".tmp", ".old", ".part", ".staged.parquet")) or n.startswith(".commit")
                or (n.startswith(".") and n.endswith(".lock"))):
            out.append(str(path.relative_to(root)))
    return sorted(out)


def resolve(args: list, ws: Path) -> list:
    """The arguments of a cell, those that depend on the workspace (callables) taken from ``ws``."""
    return [a(ws) if callable(a) else a for a in args]


def describe_export(ws: Path) -> Path:
    """The sample corpus's describe export (beside the annotations the workspace was made from)."""
    from refava.workspace import Workspace

    return Path(Workspace.load(ws).config["ava"]["annotations"][0]).parent / "labelstudio_describe_export.json"


# --- generic cases ------------------------------------------------------------------------------------------------

def foreign_out(args: Callable[[Path, Path], list]) -> Callable[[Env], None]:
    """``args(ws, out)``: the command writing to ``out``, a folder of the user's: refused, untouched."""
    def case(env: Env) -> None:
        ws = env.copy()
        out = env.tmp / "mine"
        (out / "deep").mkdir(parents=True)
        (out / "notes.txt").write_text("mine")
        (out / "deep" / "data.csv").write_text("1,2\n")
        before = snapshot(out)
        proc = refava("-w", ws, *args(ws, out))
        ok(proc, code=1)
        assert "refava did not write it" in proc.stderr or "refusing" in proc.stderr, proc.stderr
        assert snapshot(out) == before and not leftovers(env.tmp)
    return case


def inside_workspace(args: Callable[[Path, Path], list], targets=("tables", ".")) -> Callable[[Env], None]:
    """``--out`` naming the workspace itself or one of its own folders: refused, nothing deleted."""
    def case(env: Env) -> None:
        ws = env.copy()
        before = snapshot(ws)
        for target in targets:
            proc = refava("-w", ws, *args(ws, (ws / target).resolve()))
            ok(proc, code=1)
            assert "refusing" in proc.stderr, proc.stderr
        assert snapshot(ws) == before
    return case


def user_files(args: Callable[[Path, Path], list], out_of: Callable[[Path], Path] | None = None):
    """Write, put user files in the output folder, write again: the user's files are there, refava's renewed."""
    def case(env: Env) -> None:
        ws = env.copy()
        out = out_of(ws) if out_of else env.tmp / "out"
        refava("-w", ws, *args(ws, out), check=True)
        (out / "my notes.txt").write_text("keep me")
        (out / "mine" / "deep").mkdir(parents=True)
        (out / "mine" / "deep" / "x.bin").write_bytes(b"\x00\x01")
        first = {k: v for k, v in snapshot(out).items() if not k.startswith(("my notes", "mine/"))}
        refava("-w", ws, *args(ws, out), check=True)
        assert (out / "my notes.txt").read_text() == "keep me"
        assert (out / "mine" / "deep" / "x.bin").read_bytes() == b"\x00\x01"
        again = {k: v for k, v in snapshot(out).items() if not k.startswith(("my notes", "mine/"))}
        assert again.keys() == first.keys()
        assert not leftovers(out.parent)
    return case


MOUNTS: list[Path] = []


def _mount(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    MOUNTS.append(path)


@pytest.fixture(scope="module", autouse=True)
def _unmount():
    yield
    for path in MOUNTS:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def ro_ws(base, tmp_path_factory) -> Path:
    """A copy of the packaged workspace on a read-only filesystem (a real tmpfs remounted read-only)."""
    mount = tmp_path_factory.mktemp("ro") / "fs"
    _mount(mount, "96m")
    shutil.copytree(base, mount / "ws", symlinks=True)
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    return mount / "ws"


def read_only(args: list, *, writes: bool) -> Callable:
    """On a read-only workspace a writer fails with one clear line, a reader works; nothing changes."""
    def case(env: Env, ro: Path) -> None:
        before = snapshot(ro)
        proc = refava("-w", ro, *resolve(args, ro), timeout=300)
        if writes:
            ok(proc, code=1)
            assert "read-only" in proc.stderr or "cannot write" in proc.stderr, proc.stderr
        else:
            ok(proc, code=None)
        assert snapshot(ro) == before
    case.needs_ro = True
    return case


def full_disk(args: list, prepare: Callable[[Path], None] | None = None, outputs=("tables",)) -> Callable:
    """On a filesystem with no room left: one clear line, no temporary file, the inputs untouched; once room is
    made the same command finishes and writes what it writes on a roomy disk."""
    def case(env: Env) -> None:
        reference = env.copy("reference")
        if prepare:
            prepare(reference)
        refava("-w", reference, *resolve(args, reference), check=True, timeout=600)
        mount = env.tmp / "fs"
        _mount(mount, "128m")
        ws = mount / "ws"
        shutil.copytree(env.base, ws, symlinks=True)
        if prepare:
            prepare(ws)
        before = snapshot(ws)
        filler = mount / "filler"
        with open(filler, "wb") as fh:                      # every block taken
            try:
                while True:
                    fh.write(b"\0" * (1 << 16))
                    fh.flush()
            except OSError:
                pass
        proc = refava("-w", ws, *resolve(args, ws), timeout=600)
        ok(proc, code=1)
        assert "DiskFullError" in proc.stderr or "no space" in proc.stderr.lower(), proc.stderr
        assert not leftovers(mount), leftovers(mount)
        assert {k: v for k, v in snapshot(ws).items() if k.startswith("tables/")} == \
            {k: v for k, v in before.items() if k.startswith("tables/")}
        filler.unlink()
        refava("-w", ws, *resolve(args, ws), check=True, timeout=600)
        for name in outputs:
            assert _out(ws, name) == _out(reference, name), name
        assert not leftovers(mount)
    return case


def _out(ws: Path, name: str) -> dict:
    """The files under ``ws/name`` (the workspace's own path in them written <WS>: an export names its dataset)."""
    path = ws / name
    files = snapshot(path) if path.is_dir() else ({name: path.read_bytes()} if path.exists() else {})
    return {k: v.replace(str(ws).encode(), b"<WS>") for k, v in files.items()}


def sigkill(args: list, prepare: Callable[[Path], None] | None = None, outputs=("tables",)) -> Callable:
    """Killed (SIGKILL) half way through, then run again: the outputs equal an uninterrupted run's, no temporary
    file is left and no process outlives the killed one."""
    def case(env: Env) -> None:
        reference = env.copy("reference")
        if prepare:
            prepare(reference)
        started = time.monotonic()
        refava("-w", reference, *resolve(args, reference), check=True, timeout=600)
        took = time.monotonic() - started
        ws = env.copy("killed")
        if prepare:
            prepare(ws)
        proc = subprocess.Popen([sys.executable, "-m", "refava", "-w", str(ws), *map(str, resolve(args, ws))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen: set[int] = set()
        deadline = time.monotonic() + took / 2
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= descendants(proc.pid)
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        end = time.monotonic() + 10
        while any(alive(p) for p in seen) and time.monotonic() < end:
            time.sleep(0.1)
        assert not [p for p in seen if alive(p)], "a child outlived the killed command"
        refava("-w", ws, *resolve(args, ws), check=True, timeout=600)
        for name in outputs:
            assert _out(ws, name) == _out(reference, name), name
        assert not leftovers(ws), leftovers(ws)
    return case


@contextmanager
def holding(setup: str):
    """Another process that holds the lock ``setup`` makes (as ``lock``) until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", f"{setup}\nimport time\nwith lock:\n"
                               f"    print('held', flush=True)\n    time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def holds_lock(stage: str, args: list) -> Callable:
    """While another process holds the stage's lock, the command is refused at once, naming the holder."""
    def case(env: Env) -> None:
        ws = env.copy()
        before = snapshot(ws)
        with holding(f"from refava.workspace import Workspace\nlock = Workspace.load({str(ws)!r}).lock({stage!r})"
                     ) as holder:
            proc = refava("-w", ws, *resolve(args, ws), timeout=120)
            ok(proc, code=1)
            assert "already running" in proc.stderr and f"PID {holder.pid}" in proc.stderr, proc.stderr
        assert {k: v for k, v in snapshot(ws).items() if not k.startswith("locks/")} == \
            {k: v for k, v in before.items() if not k.startswith("locks/")}
    return case


def holds_folder(args: Callable[[Path, Path], list]) -> Callable:
    """Two writers of the same output folder: the second is refused at once; the first one's result is whole."""
    def case(env: Env) -> None:
        ws = env.copy()
        out = env.tmp / "out"
        with holding(f"from pathlib import Path\nfrom refava.io import folder_lock\n"
                     f"lock = folder_lock(Path({str(out)!r}), 'output')"):
            proc = refava("-w", ws, *args(ws, out), timeout=120)
            ok(proc, code=1)
            assert "being written" in proc.stderr, proc.stderr
            assert not out.exists()
        # and two real runs at once: one is refused or both finish; the folder is whole either way
        procs = [subprocess.Popen([sys.executable, "-m", "refava", "-w", str(ws), *map(str, args(ws, out))],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        assert any(code == 0 for code, _ in results), results
        assert all(code == 0 or "being written" in err for code, err in results), results
        assert "Traceback" not in "".join(err for _, err in results)
        assert not leftovers(out.parent)
    return case


# --- hostile inputs -----------------------------------------------------------------------------------------------

def hostile_bytes(tmp: Path) -> dict[str, Path]:
    """Files in the forms a hostile or broken input takes."""
    forms = {
        "latin1": "un homme à gauche,0002\n".encode("latin-1"),
        "utf16": "[{\"x\": 1}]\n".encode("utf-16"),
        "binary": bytes(range(256)) * 40,
        "empty": b"",
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "huge_number": b'[{"id": 1' + b"9" * 400 + b'}]',
        "huge_line": b"a" * (17 << 20),
    }
    out = {}
    for name, data in forms.items():
        path = tmp / f"hostile-{name}.txt"
        path.write_bytes(data)
        out[name] = path
    loop = tmp / "hostile-loop.txt"
    os.symlink(loop, loop)
    out["symlink_loop"] = loop
    out["missing"] = tmp / "hostile-missing.txt"
    out["folder"] = tmp
    return out


def hostile(args: Callable[[Path, Path], list], *, unchanged=("tables",), forms=None, extra=None) -> Callable:
    """The command handed each hostile form of one input file: no traceback, a non-zero exit or a clean run, a
    message that names the file and is short, and the workspace's outputs untouched."""
    def case(env: Env) -> None:
        ws = env.copy()
        before = {name: _out(ws, name) for name in unchanged}
        files = hostile_bytes(env.tmp)
        for form, path in files.items():
            if forms and form not in forms:
                continue
            proc = refava("-w", ws, *args(ws, path), timeout=300)
            ok(proc, code=None)
            assert len(proc.stderr) < 4000, (form, len(proc.stderr))
            if proc.returncode:
                assert path.name in proc.stderr or str(path) in proc.stderr, (form, proc.stderr)
            for name in unchanged:
                assert _out(ws, name) == before[name], (form, name)
        if extra:
            extra(env, ws)
    return case


def _predictions_extra(env: Env, ws: Path) -> None:
    """Typed garbage in predictions: strings, booleans, 400-digit numbers, a csv field over 128 KiB, bad UTF-8."""
    names = json.loads((ws / "refava" / "refava-manifest.json").read_text())
    assert names["format"] == "refava-dataset"
    import pyarrow.parquet as pq

    shard = next((ws / "refava").rglob("test-*.parquet"))
    ids = pq.read_table(shard, columns=["instance_id"]).column("instance_id").to_pylist()
    cases = {
        "strings.jsonl": "\n".join(json.dumps({"instance_id": i, "scores": ["0.5"] * 80}) for i in ids),
        "bools.jsonl": "\n".join(json.dumps({"instance_id": i, "scores": [True] * 80}) for i in ids),
        "digits.jsonl": json.dumps({"instance_id": ids[0], "scores": [0.5] * 79}).replace("]", ", 1" + "0" * 400 + "]"),
        "bigfield.csv": "instance_id," + ",".join(f"score_{k}" for k in range(80)) + "\n" + ids[0] + ","
                        + "1" * (130 << 10) + ",0" * 79 + "\n",
    }
    for name, text in cases.items():
        path = env.tmp / name
        path.write_text(text)
        proc = refava("evaluate", "--predictions", path, "--split", "test", "--dataset", ws / "refava")
        ok(proc, code=1)
        assert name in proc.stderr and len(proc.stderr) < 1000, (name, proc.stderr)
    bad = env.tmp / "bad-utf8.csv"
    bad.write_bytes(b"instance_id," + b",".join(f"score_{k}".encode() for k in range(80)) + b"\n\xff\xfe,1\n")
    proc = refava("evaluate", "--predictions", bad, "--split", "test", "--dataset", ws / "refava")
    ok(proc, code=1)
    assert "bad-utf8.csv line 2" in proc.stderr and "UTF-8" in proc.stderr


def _annotate_extra(env: Env, ws: Path) -> None:
    """Label Studio exports that parse but hold the wrong types: counted problems, an accepted expression kept."""
    export = json.loads((env.sample / "annotations" / "labelstudio_describe_export.json").read_text())
    status_before = (ws / "tables" / "annotation_status.parquet").read_bytes()
    task = json.loads(json.dumps(export[0]))
    for result in task["annotations"][0]["result"]:
        if result.get("from_name") == "expression":
            result["value"]["text"] = [42, None]
        elif result.get("from_name") == "flags":
            result["value"]["choices"] = [{"a": 1}]
    for variant in ([task], [{**task, "data": {**task["data"], "clip_id": ["x"]}}]):
        path = env.tmp / "typed.json"
        path.write_text(json.dumps(variant))
        proc = refava("-w", ws, "annotate", "import", path)
        ok(proc, code=None)
        assert "malformed_task" in proc.stdout + proc.stderr or proc.returncode, proc.stdout
        refava("-w", ws, "annotate", "check", check=True)
        assert (ws / "tables" / "annotation_status.parquet").read_bytes() == status_before
    # a verify task map (--verify-map) in every hostile form: refused naming the file, the workspace's map kept
    mapping = ws / "labelstudio" / "verify_tasks.json"
    before = mapping.read_bytes() if mapping.exists() else None
    tables = _out(ws, "tables")
    verify_export = env.sample / "annotations" / "labelstudio_verify_export.json"
    maps = env.tmp / "maps"
    maps.mkdir(exist_ok=True)
    for form, path in hostile_bytes(maps).items():
        proc = refava("-w", ws, "annotate", "import", verify_export, "--verify-map", path)
        ok(proc, code=None)
        assert proc.returncode and (path.name in proc.stderr or str(path) in proc.stderr), (form, proc.stderr)
        assert len(proc.stderr) < 4000 and (mapping.read_bytes() if mapping.exists() else None) == before, form
        assert _out(ws, "tables") == tables, form


def _ingest_hostile_csv(env: Env, ws: Path) -> None:
    """AVA rows with a 400-digit timestamp, boxes that are words, a person id that is a float: counted problems."""
    from refava.workspace import Workspace

    config = Workspace.load(ws).config
    good = Path(config["ava"]["annotations"][0]).read_text().splitlines()
    video = good[0].split(",")[0]
    rows = good + [f"{video},{'9' * 400},0.1,0.1,0.5,0.5,12,1", f"{video},0003,a,b,c,d,12,1",
                   f"{video},0003,0.1,0.1,0.5,0.5,12,1.5"]
    path = env.tmp / "typed.csv"
    path.write_text("\n".join(rows) + "\n")
    before = _out(ws, "tables")
    proc = refava("-w", ws, "ingest", "--no-progress", "--annotations", path)
    ok(proc, code=0)
    report = json.loads((ws / "reports" / "ingest.json").read_text())
    assert sum(report["problem_counts"].values()) >= 3, report["problem_counts"]
    assert _out(ws, "tables").keys() == before.keys()


def _init_keeps_user_files(env: Env) -> None:
    """init in a folder holding the user's files and folders: they stay as they were, refava.toml is added; a
    second init there is refused and changes nothing."""
    target = env.tmp / "project"
    (target / "notes").mkdir(parents=True)
    (target / "notes" / "plan.md").write_text("my plan\n")
    (target / "README.md").write_text("mine\n")
    (target / ".hidden.tmp").write_text("also mine\n")         # named like a temporary: still the user's
    before = snapshot(target)
    movies = env.sample / "movies"
    annotations = env.sample / "annotations" / "ava_sample_v2.2.csv"
    ok(refava("init", target, "--movies-dir", movies, "--annotations", annotations))
    after = snapshot(target)
    assert {k: v for k, v in after.items() if k in before} == before
    assert "refava.toml" in after
    again = refava("init", target, "--movies-dir", movies, "--annotations", annotations)
    ok(again, code=1)
    assert snapshot(target) == after


def _init_args(ws: Path, path: Path) -> list:
    return ["init", ws.parent / f"new-{path.name}", "--movies-dir", path, "--annotations", path]


def _merge_extra(env: Env, ws: Path) -> None:
    """Completion records that are damaged, tampered with (a moved keyframe) or whose store has a zeroed block."""
    import pyarrow.parquet as pq

    from refava.tables import PROVENANCE_KEY

    store = sorted((ws / "frames" / "clean").glob("*.parquet"))[0]
    pristine = store.read_bytes()
    table = pq.read_table(store)
    meta = {k: v for k, v in pq.read_metadata(store).metadata.items() if k != b"ARROW:schema"}
    record = json.loads(meta[PROVENANCE_KEY])

    def rewrite(new_meta) -> None:
        pq.write_table(table.replace_schema_metadata(new_meta), store)

    record["result"]["clips"][0]["keyframe_pts_s"] = 9999.0
    rewrite({**meta, PROVENANCE_KEY: json.dumps(record).encode()})
    proc = refava("-w", ws, "ingest", "--merge", "--no-progress")
    ok(proc, code=1)
    assert store.stem in proc.stderr and "9999" in proc.stderr and "do not agree" in proc.stderr, proc.stderr
    rewrite({**meta, PROVENANCE_KEY: b"{not json"})                     # damaged: the movie is not done
    proc = refava("-w", ws, "ingest", "--merge", "--no-progress")
    ok(proc, code=1)
    assert "not done yet" in proc.stderr and store.stem in proc.stderr
    data = bytearray(pristine)
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)                             # a zeroed block in the data pages
    store.write_bytes(bytes(data))
    proc = refava("-w", ws, "ingest", "--merge", "--no-progress")
    ok(proc, code=1)
    assert store.stem in proc.stderr
    store.write_bytes(pristine)
    proc = refava("-w", ws, "ingest", "--no-progress")                   # a plain run after all of it
    ok(proc, code=0)


def _ray_unreachable(env: Env) -> None:
    ws = env.copy()
    started = time.monotonic()
    proc = refava("-w", ws, "ingest", "--force", "--engine", "ray", "--ray-address", "127.0.0.1:1", "--no-progress",
                  timeout=120)
    ok(proc, code=1)
    assert time.monotonic() - started < 60 and "no Ray cluster answers at 127.0.0.1:1" in proc.stderr


def _serve_busy_port(env: Env) -> None:
    import socket

    ws = env.copy()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = refava("-w", ws, "browse", "--no-progress", "--serve", "--port", busy.getsockname()[1], timeout=60)
    ok(proc, code=1)
    assert "another program uses that port" in proc.stderr


def _browse_damaged_footer(env: Env) -> None:
    ws = env.copy()
    store = sorted((ws / "frames" / "clean").glob("*.parquet"))[0]
    store.write_bytes(store.read_bytes()[:-200] + bytes(200))
    proc = refava("-w", ws, "browse", "--no-progress")
    ok(proc, code=0)
    assert "skipped a damaged frame store" in proc.stderr and store.name in proc.stderr


def _undecodable_jpeg_not_packaged(env: Env) -> None:
    """A JPEG damaged before its checksum was taken: package refuses it (train would crash on it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from refava.framestore import clip_hash, clip_order
    from refava.tables import PROVENANCE_KEY

    ws = env.copy()
    store = sorted((ws / "frames" / "clean").glob("*.parquet"))[0]
    table = pq.read_table(store)
    rows = table.to_pylist()
    rows[1]["jpeg"] = rows[1]["jpeg"][:200] + bytes(len(rows[1]["jpeg"]) - 200)
    meta = {k: v for k, v in pq.read_metadata(store).metadata.items() if k != b"ARROW:schema"}
    record = json.loads(meta[PROVENANCE_KEY])
    clip = rows[1]["clip_id"]
    record["clip_sha256"][clip] = clip_hash(r["jpeg"] for r in sorted([r for r in rows if r["clip_id"] == clip],
                                                                       key=clip_order))
    pq.write_table(pa.Table.from_pylist(rows, table.schema).replace_schema_metadata(
        {**meta, PROVENANCE_KEY: json.dumps(record).encode()}), store)
    before = snapshot(ws / "refava")
    proc = refava("-w", ws, "package", "--no-progress")
    ok(proc, code=1)
    assert clip in proc.stderr and "does not decode" in proc.stderr or "not JPEG" in proc.stderr, proc.stderr
    assert snapshot(ws / "refava") == before


def _status_keeps_other_hosts(env: Env) -> None:
    ws = env.copy()
    """A build folder whose PID is not alive here may be another node's on a shared filesystem: kept."""
    for name in (".refava.some-other-node~12345.tmp", ".refava.tmp-999999"):     # ours now, and older refava's
        (ws / name).mkdir()
        (ws / name / "part.parquet").write_bytes(b"x")
    refava("-w", ws, "status", check=True)
    for name in (".refava.some-other-node~12345.tmp", ".refava.tmp-999999"):
        assert (ws / name / "part.parquet").exists(), name


def _frames_all_recorded(env: Env) -> None:
    ws = env.copy()
    refava("-w", ws, "ingest", "--frames", "all", "--no-progress", check=True)
    state = json.loads(refava("-w", ws, "status", "--json", check=True).stdout)["stages"][0]
    assert state["state"] == "done", state
    again = refava("-w", ws, "ingest", "--no-progress", check=True)
    assert "nothing to do" in again.stdout


def _verify_short_movie(env: Env) -> None:
    """A movie shorter than the clip window gives a store with no clip: verify accepts it."""
    from factories import make_indexed_video
    from test_ingest import people_rows, write_csv

    movies = env.tmp / "movies"
    make_indexed_video(movies / "a.mp4", 180, fps=30)
    make_indexed_video(movies / "s.mp4", 20, fps=30)
    csv = write_csv(env.tmp / "gt.csv", people_rows("a", [2]) + people_rows("s", [2]))
    ws = env.tmp / "short"
    refava("init", ws, "--movies-dir", movies, "--annotations", csv, check=True)
    refava("-w", ws, "ingest", "--no-progress", check=True)
    ok(refava("-w", ws, "verify", "--no-progress"), code=0)


def _progress_not_in_logs(env: Env) -> None:
    ws = env.copy()
    proc = refava("-w", ws, "package", timeout=300)                 # no --no-progress, stderr is a pipe
    ok(proc, code=0)
    assert "\r" not in proc.stderr and "row/s" not in proc.stderr


def _export_race(env: Env) -> None:
    holds_folder(lambda ws, out: ["export", "--format", "ava", "--out", out])(env)


def _killed_export_cleaned(env: Env) -> None:
    from refava.fsutil import HOST

    ws = env.copy()
    out = ws / "exports" / "ava"
    refava("-w", ws, "export", "--format", "ava", check=True)
    stray = out.parent / f".ava.{HOST}~999999.tmp"                    # what a killed export leaves
    (stray / "x").mkdir(parents=True)
    refava("-w", ws, "export", "--format", "ava", check=True)
    assert not stray.exists() and not leftovers(out.parent)


# --- the rows -----------------------------------------------------------------------------------------------------

WS_ONLY = NA("writes only the workspace's own tables/, frames/ and reports/: no output folder to choose")
READS_TABLES = NA("reads only tables and stores refava wrote and checked; options are checked by click")
READER = NA("a reader: it writes nothing, so a second run at the same time changes nothing")
ONE_FILE = NA("writes single files atomically (a temporary beside, then a rename): killed, the old file stays whole")
EXPORT = lambda fmt: lambda ws, out: ["export", "--format", fmt, "--out", out]   # noqa: E731
BROWSE = lambda ws, out: ["browse", "--no-progress", "--out", out]                 # noqa: E731


def _sample_args(ws: Path, out: Path) -> list:
    return ["sample-corpus", out, "--seconds", "6"]


def _download_case(kind: str) -> Callable[[Env], None]:
    from test_download import FILES, Server

    def case(env: Env) -> None:
        out = env.tmp / "movies"
        out.mkdir()
        listing = env.tmp / "files.txt"
        listing.write_text("\n".join(FILES) + "\n")
        if kind == "sigkill":
            _download_killed(env, listing)
            return
        with Server(FILES) as srv:
            args = ["download", "--file-list", listing, "--out", out, "--base-url", srv.url, "--no-progress"]
            if kind == "user_files":
                (out / "my-movie.mkv").write_bytes(b"mine")
                refava(*args, check=True)
                assert (out / "my-movie.mkv").read_bytes() == b"mine"
                assert all((out / n).read_bytes() == d for n, d in FILES.items()) and not leftovers(out)
            elif kind == "second_writer":
                from refava.io import folder_lock

                with folder_lock(out, "movies", out / ".refava-download.lock"):
                    proc = refava(*args)
                ok(proc, code=1)
                assert "being written" in proc.stderr and not list(out.iterdir())
            elif kind == "hostile":
                for form, path in hostile_bytes(env.tmp).items():
                    proc = refava("download", "--file-list", path, "--out", out, "--base-url", srv.url,
                                  "--no-progress")
                    ok(proc, code=None)
                    assert proc.returncode != 0 and len(proc.stderr) < 2000, (form, proc.stderr)
    return case


def _download_killed(env: Env, listing: Path) -> None:
    """Over a slow link, SIGKILL at three points of a download, then run again: every file whole, no .part or
    temporary left, no process outliving the killed one."""
    from test_download import FILES, Server
    from test_kill import POINTS, kill_at

    with Server(FILES, pace_s=0.04) as srv:
        reference = env.tmp / "reference"
        started = time.monotonic()
        refava("download", "--file-list", listing, "--out", reference, "--base-url", srv.url, "--no-progress",
               check=True)
        took = time.monotonic() - started
        for point in POINTS:
            out = env.tmp / f"killed-{point}"
            args = ["download", "--file-list", str(listing), "--out", str(out), "--base-url", srv.url,
                    "--no-progress"]
            seen = kill_at(env.tmp, args, point * took)
            end = time.monotonic() + 10
            while any(alive(p) for p in seen) and time.monotonic() < end:
                time.sleep(0.1)
            assert not [p for p in seen if alive(p)], f"a child outlived the killed download ({point})"
            refava(*args, check=True)
            assert {p.name: p.read_bytes() for p in out.iterdir()} == FILES, point
            assert not leftovers(out), (point, leftovers(out))


ROWS: dict[str, dict[str, object]] = {
    "init": {
        "foreign_out": NA("a workspace may be made in any folder: init writes refava.toml alone and refuses one "
                          "that is there (tests/test_faults.py)"),
        "user_files": _init_keeps_user_files,
        "read_only": NA("writes one file into a folder it may create; the read-only case is the OS error "
                        "message every command shares (cli.os_error_message)"),
        "full_disk": NA("one small atomic file: written whole or not at all (fsutil.atomic_path)"),
        "sigkill": ONE_FILE,
        "hostile_inputs": hostile(_init_args, unchanged=()),
        "second_writer": NA("refuses a refava.toml that exists: of two inits one writes, the other is refused"),
    },
    "sample-corpus": {
        "foreign_out": foreign_out(_sample_args),
        "user_files": user_files(_sample_args),
        "read_only": NA("writes no workspace (it makes the input of one)"),
        "full_disk": NA("builds beside OUT through io.output_folder, as export does (full_disk row of export)"),
        "sigkill": NA("builds beside OUT through io.output_folder: killed, OUT is untouched (sigkill row of export)"),
        "hostile_inputs": NA("reads no input file: it generates every byte it writes"),
        "second_writer": holds_folder(_sample_args),
    },
    "download": {
        "foreign_out": NA("downloads into the movies folder, which is the user's: files are added one at a time "
                          "(.part, then a rename), none removed"),
        "user_files": _download_case("user_files"),
        "read_only": NA("writes no workspace; the movies folder's OS errors are counted failures"),
        "full_disk": NA("each file is a .part until its size is checked, then renamed"),
        "sigkill": _download_case("sigkill"),
        "hostile_inputs": _download_case("hostile"),
        "second_writer": _download_case("second_writer"),
    },
    "ingest": {
        "foreign_out": WS_ONLY,
        "user_files": NA("its folders are the workspace's own; it deletes no file in them"),
        "read_only": read_only(["ingest", "--force", "--no-progress"], writes=True),
        "full_disk": Elsewhere("tests/test_faults.py::test_a_full_disk_says_what_was_kept_and_what_is_needed"),
        "sigkill": Elsewhere("tests/test_kill.py::test_sigkill_at_three_points_leaves_nothing_and_the_rerun_gives_the_same_bytes"),
        "hostile_inputs": hostile(lambda ws, p: ["ingest", "--no-progress", "--annotations", p],
                                  extra=_ingest_hostile_csv),
        "second_writer": holds_lock("ingest", ["ingest", "--force", "--no-progress"]),
    },
    "annotate import": {
        "foreign_out": WS_ONLY,
        "user_files": NA("writes the annotations table alone"),
        "read_only": read_only(["annotate", "import", describe_export], writes=True),
        "full_disk": full_disk(["annotate", "import", describe_export],
                               prepare=lambda ws: (ws / "tables" / "annotations.parquet").unlink()),
        "sigkill": sigkill(["annotate", "import", describe_export],
                           prepare=lambda ws: (ws / "tables" / "annotations.parquet").unlink()),
        "hostile_inputs": hostile(lambda ws, p: ["annotate", "import", p], extra=_annotate_extra),
        "second_writer": holds_lock("annotate", ["annotate", "import", describe_export]),
    },
    "annotate check": {
        "foreign_out": WS_ONLY, "user_files": WS_ONLY,
        "read_only": read_only(["annotate", "check"], writes=True),
        "full_disk": full_disk(["annotate", "check"],
                               prepare=lambda ws: (ws / "tables" / "annotation_status.parquet").unlink()),
        "sigkill": sigkill(["annotate", "check"],
                           prepare=lambda ws: (ws / "tables" / "annotation_status.parquet").unlink()),
        "hostile_inputs": READS_TABLES,
        "second_writer": holds_lock("annotate", ["annotate", "check"]),
    },
    "annotate status": {
        "foreign_out": WS_ONLY, "user_files": WS_ONLY,
        "read_only": read_only(["annotate", "status"], writes=False),
        "full_disk": NA("writes only its report (one atomic file); the tables are read"),
        "sigkill": ONE_FILE, "hostile_inputs": READS_TABLES, "second_writer": READER,
    },
    "annotate push": {
        "foreign_out": NA("writes to a Label Studio server and labelstudio/ of the workspace"),
        "user_files": NA("writes to a Label Studio server and labelstudio/ of the workspace"),
        "read_only": read_only(["annotate", "push", "--stage", "describe", "--url", "http://127.0.0.1:1"], writes=True),
        "full_disk": NA("writes its task map atomically; the server holds the rest"),
        "sigkill": Elsewhere("tests/annotate/test_labelstudio_kill.py::test_sigkill_during_push_then_a_rerun_gives_the_tasks_of_an_uninterrupted_push"),
        "hostile_inputs": Elsewhere("tests/annotate/test_labelstudio_server.py::test_push_finds_the_document_root_fails_clearly_without_one_and_repairs_broken_tasks"),
        "second_writer": holds_lock("annotate", ["annotate", "push", "--stage", "describe", "--url", "http://127.0.0.1:1"]),
    },
    "annotate pull": {
        "foreign_out": NA("writes labelstudio/ of the workspace and the annotations table"),
        "user_files": NA("writes labelstudio/ of the workspace and the annotations table"),
        "read_only": read_only(["annotate", "pull", "--url", "http://127.0.0.1:1"], writes=True),
        "full_disk": NA("each export is written atomically, then imported as `annotate import` is"),
        "sigkill": Elsewhere("tests/annotate/test_labelstudio_kill.py::test_sigkill_during_pull_then_a_rerun_writes_the_same_table"),
        "hostile_inputs": Elsewhere("tests/test_faults.py::test_exports_with_fields_of_the_wrong_type_are_problems_not_tracebacks"),
        "second_writer": holds_lock("annotate", ["annotate", "pull", "--url", "http://127.0.0.1:1"]),
    },
    "build-splits": {
        "foreign_out": WS_ONLY, "user_files": WS_ONLY,
        "read_only": read_only(["build-splits", "--fresh"], writes=True),
        "full_disk": full_disk(["build-splits"], prepare=lambda ws: (ws / "tables" / "splits.parquet").unlink()),
        "sigkill": sigkill(["build-splits"], prepare=lambda ws: (ws / "tables" / "splits.parquet").unlink()),
        "hostile_inputs": READS_TABLES,
        "second_writer": holds_lock("build-splits", ["build-splits", "--fresh"]),
    },
    "stats": {
        "foreign_out": WS_ONLY, "user_files": WS_ONLY,
        "read_only": read_only(["stats"], writes=True),
        "full_disk": NA("writes figures and a page under reports/, each atomically; no table"),
        "sigkill": sigkill(["stats"], outputs=()),
        "hostile_inputs": READS_TABLES,
        "second_writer": holds_lock("stats", ["stats"]),
    },
    "corrupt": {
        "foreign_out": WS_ONLY, "user_files": WS_ONLY,
        "read_only": read_only(["corrupt", "--type", "fog", "--severity", "3", "--split", "test", "--force",
                                "--no-progress"], writes=True),
        "full_disk": full_disk(["corrupt", "--type", "gaussian_noise", "--severity", "2", "--split", "test",
                                "--no-progress"], outputs=("tables", "frames")),
        "sigkill": Elsewhere("tests/test_kill.py::test_sigkill_at_three_points_leaves_nothing_and_the_rerun_gives_the_same_bytes"),
        "hostile_inputs": Elsewhere("tests/test_faults.py::test_an_undecodable_jpeg_during_corrupt_names_movie_clip_and_frame"),
        "second_writer": holds_lock("corrupt", ["corrupt", "--type", "fog", "--severity", "3", "--split", "test",
                                                "--force", "--no-progress"]),
    },
    "rephrase": {
        "foreign_out": WS_ONLY, "user_files": WS_ONLY,
        "read_only": read_only(["rephrase", "--test", "--backend", "base_url", "--base-url", "http://127.0.0.1:1/v1",
                                "--no-progress"], writes=True),
        "full_disk": NA("each answer is committed to the cache as one atomic file; the table at the end"),
        "sigkill": Elsewhere("tests/rephrase/test_rephrase.py::test_uninterrupted_killed_and_cached_runs_give_the_same_table_bytes"),
        "hostile_inputs": Elsewhere("tests/rephrase/test_rephrase.py::test_faults_end_accepted_or_failed_none_lost_and_rerun_sends_only_what_is_missing"),
        "second_writer": holds_lock("rephrase", ["rephrase", "--test", "--backend", "base_url", "--base-url",
                                                 "http://127.0.0.1:1/v1", "--no-progress"]),
    },
    "package": {
        "foreign_out": foreign_out(lambda ws, out: ["package", "--no-progress", "--out", out]),
        "user_files": Elsewhere("tests/test_faults.py::test_package_out_keeps_files_its_manifest_does_not_list"),
        "read_only": read_only(["package", "--no-progress"], writes=True),
        "full_disk": full_disk(["package", "--no-progress"], prepare=lambda ws: shutil.rmtree(ws / "refava"),
                               outputs=("refava",)),
        "sigkill": Elsewhere("tests/test_kill.py::test_sigkill_at_three_points_leaves_nothing_and_the_rerun_gives_the_same_bytes"),
        "hostile_inputs": _undecodable_jpeg_not_packaged,
        "second_writer": holds_lock("package", ["package", "--no-progress"]),
    },
    "verify": {
        "foreign_out": WS_ONLY, "user_files": WS_ONLY,
        "read_only": read_only(["verify", "--no-progress", "--no-decode"], writes=False),
        "full_disk": NA("a reader: it writes nothing at all"), "sigkill": NA("a reader: it writes nothing at all"),
        "hostile_inputs": _verify_short_movie, "second_writer": READER,
    },
    "status": {
        "foreign_out": WS_ONLY, "user_files": WS_ONLY,
        "read_only": read_only(["status"], writes=False),
        "full_disk": NA("a reader: it writes nothing at all"), "sigkill": NA("a reader: it writes nothing at all"),
        "hostile_inputs": _status_keeps_other_hosts, "second_writer": READER,
    },
    "export": {
        "foreign_out": foreign_out(EXPORT("ava")),
        "user_files": user_files(EXPORT("ava"), out_of=lambda ws: ws / "exports" / "ava"),
        "read_only": read_only(["export", "--format", "coco"], writes=True),
        "full_disk": full_disk(["export", "--format", "coco", "--no-images"], outputs=("exports",)),
        # webdataset: the resumable one (a killed export keeps its finished shards beside the output, and the rerun
        # writes the uninterrupted run's bytes); ava and coco share output_folder, see _killed_export_cleaned
        "sigkill": sigkill(["export", "--format", "webdataset", "--shard-size", "300KB", "--workers", "2",
                            "--no-progress"], outputs=("exports",)),
        "hostile_inputs": inside_workspace(EXPORT("coco")),
        "second_writer": _export_race,
    },
    "browse": {
        "foreign_out": foreign_out(BROWSE),
        "user_files": user_files(BROWSE, out_of=lambda ws: ws / "reports" / "browse"),
        "read_only": read_only(["browse", "--no-progress"], writes=True),
        "full_disk": full_disk(["browse", "--no-progress"], outputs=()),
        "sigkill": sigkill(["browse", "--no-progress"], outputs=()),
        "hostile_inputs": inside_workspace(BROWSE, targets=("tables", ".", "frames", "refava")),
        "second_writer": holds_folder(BROWSE),
    },
    "evaluate": {
        "foreign_out": NA("--out names one file, written atomically"),
        "user_files": NA("--out names one file, written atomically"),
        "read_only": read_only(["evaluate", "--predictions", lambda ro: ro / "none.jsonl", "--split", "test"],
                               writes=False),
        "full_disk": NA("writes one metrics file atomically"), "sigkill": ONE_FILE,
        "hostile_inputs": hostile(lambda ws, p: ["evaluate", "--predictions", p, "--split", "test", "--dataset",
                                                 ws / "refava"], extra=_predictions_extra),
        "second_writer": READER,
    },
    "train": {
        "foreign_out": foreign_out(lambda ws, out: ["train", "--run", out, "--epochs", "1"]),
        "user_files": NA("writes into its run folder beside whatever is there; it deletes nothing"),
        "read_only": read_only(["train", "--epochs", "1"], writes=True),
        "full_disk": NA("checkpoints and metrics are written atomically each epoch"),
        "sigkill": Elsewhere("tests/test_kill.py::test_sigkill_at_three_points_leaves_nothing_and_the_rerun_gives_the_same_bytes"),
        "hostile_inputs": hostile(lambda ws, p: ["train", "--config", p, "--epochs", "1"], unchanged=()),
        "second_writer": holds_lock("train", ["train", "--epochs", "1"]),
    },
    "validate-dataset": {
        "foreign_out": foreign_out(lambda ws, out: ["validate-dataset", "--out", out, "--epochs", "1", "--seeds", "1"]),
        "user_files": NA("writes report files into its folder beside whatever is there; it deletes nothing"),
        "read_only": read_only(["validate-dataset", "--epochs", "1", "--seeds", "1"], writes=True),
        "full_disk": NA("writes its report files atomically at the end"),
        "sigkill": NA("writes its report files atomically at the end: killed, the last report stays"),
        "hostile_inputs": NA("reads only the packaged dataset, checked by `package --verify`"),
        "second_writer": holds_lock("validate-dataset", ["validate-dataset", "--epochs", "1", "--seeds", "1"]),
    },
}

# issue 25's "Found", each kept fixed by a cell of the matrix (command, fault) or a case of its own here
FOUND = {
    "browse --out tables / $PWD deletes what is there": ("browse", "hostile_inputs"),
    "browse --out DIR deletes a user's folder": ("browse", "foreign_out"),
    "a missing or empty movies_dir empties the tables": "test_an_empty_movies_dir_keeps_the_tables_of_a_build",
    "an ingest that finds no movie exits 0": "test_an_ingest_that_finds_no_movie_fails_and_writes_no_table",
    "a re-export deletes the user's files": ("export", "user_files"),
    "two exports race": ("export", "second_writer"),
    "a killed export or browse leaves its temporary folder": "_killed_export_cleaned",
    "evaluate --predictions hostile files": ("evaluate", "hostile_inputs"),
    "--merge with damaged or tampered records": "_merge_extra",
    "a Ray address that does not answer": "_ray_unreachable",
    "a symlink loop in the movies folder": ("init", "hostile_inputs"),
    "browse --serve on a busy port": "_serve_busy_port",
    "browse on a store with a damaged footer": "_browse_damaged_footer",
    "annotate import of hostile Label Studio exports": ("annotate import", "hostile_inputs"),
    "a JPEG that does not decode ships": ("package", "hostile_inputs"),
    "status deletes another host's temporary folder": ("status", "hostile_inputs"),
    "ingest --frames all then status says stale": "_frames_all_recorded",
    "verify fails on a store with no clip": ("verify", "hostile_inputs"),
    "progress bars written to a log file": "_progress_not_in_logs",
}
OWN_CASES = {f.__name__: f for f in (_killed_export_cleaned, _ray_unreachable, _serve_busy_port, _browse_damaged_footer,
                                      _frames_all_recorded, _progress_not_in_logs)}


def _cli_commands() -> list[str]:
    import click

    from refava.cli import cli

    out = []

    def walk(group, prefix):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, prefix + [name])
            else:
                out.append(" ".join(prefix + [name]))
    walk(cli, [])
    return sorted(out)


def test_every_command_has_a_row():
    assert sorted(ROWS) == _cli_commands(), "a command without its row in the conformance matrix (or a stale row)"


def test_every_row_says_something_of_every_fault():
    for command, row in ROWS.items():
        assert set(row) == set(FAULTS), (command, set(FAULTS) ^ set(row))
        for fault, cell in row.items():
            assert isinstance(cell, (NA, Elsewhere)) or callable(cell), (command, fault)
            assert not isinstance(cell, NA) or len(cell.reason) > 20, (command, fault)


def test_cells_elsewhere_name_tests_that_exist():
    for command, row in ROWS.items():
        for fault, cell in row.items():
            if isinstance(cell, Elsewhere):
                file, _, name = cell.test.partition("::")
                assert f"def {name}(" in (TESTS.parent / file).read_text(), (command, fault, cell.test)


def test_every_found_defect_has_its_case():
    this = Path(__file__).read_text()
    for defect, where in FOUND.items():
        if isinstance(where, tuple):
            assert callable(ROWS[where[0]][where[1]]), defect
        else:
            assert f"def {where}(" in this or f"def {where}(" in (TESTS / "test_faults.py").read_text(), defect


CELLS = [(c, f) for c, row in ROWS.items() for f, cell in row.items() if callable(cell)]


@pytest.mark.parametrize("command, fault", CELLS, ids=[f"{c}-{f}" for c, f in CELLS])
def test_cell(command, fault, request, env):
    case = ROWS[command][fault]
    if getattr(case, "needs_ro", False):
        case(env, request.getfixturevalue("ro_ws"))
    else:
        case(env)


@pytest.mark.parametrize("name", sorted(OWN_CASES))
def test_found(name, env):
    OWN_CASES[name](env)


def test_merge_refuses_records_that_disagree_with_their_stores(env):
    _merge_extra(env, env.copy())
