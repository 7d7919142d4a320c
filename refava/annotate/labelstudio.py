"""The Label Studio edge: push keyframes and tasks (describe, verify), pull full JSON exports.

Everything that talks to the server is here; the conversion of exports to annotation rows is ``convert.py`` (pure).
The token comes from ``LABEL_STUDIO_API_KEY`` (a personal access token, exchanged for access tokens, or a legacy
token) and is never printed: errors name the URL and the HTTP status only.  The URL comes from ``--url``, else
``LABEL_STUDIO_URL``, else ``[labelstudio] url`` in refava.toml.
Keyframes are served by the server's local-files storage: they are written under ``<workspace>/labelstudio/`` and the
server must run with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and a document root that contains that folder
(``tools/labelstudio.sh`` starts one so).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import RefavaError

TOKEN_ENV = "LABEL_STUDIO_API_KEY"
URL_ENV = "LABEL_STUDIO_URL"
VERIFY_TOKEN_ENV = "LABEL_STUDIO_VERIFY_API_KEY"
VERIFY_URL_ENV = "LABEL_STUDIO_VERIFY_URL"
ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
TITLES = {"describe": "RefAVA describe", "verify": "RefAVA verify"}


class LabelStudioError(RefavaError, RuntimeError):
    """The server cannot be reached, refuses the token, or answers something unexpected."""


def config_path(stage: str) -> Path:
    """The labeling config ``<stage>.xml``, shipped inside the package (refava/annotate/configs; the source tree's
    ``annotation/`` is a link to it)."""
    path = Path(__file__).resolve().parent / "configs" / f"{stage}.xml"
    if not path.exists():
        raise LabelStudioError(f"labeling config {path} not found: the refava installation is incomplete; "
                               f"reinstall it (pip install --force-reinstall refava)")
    return path


def guidelines_html() -> str:
    """The annotation guidelines (annotation/guidelines.md, shipped in the package) as the HTML that Label Studio
    shows as the project's instructions: rendered by markdown-it (CommonMark plus tables), so tables, emphasis,
    numbered lists and wrapped paragraphs come out as a reader expects."""
    from markdown_it import MarkdownIt

    text = (Path(__file__).resolve().parent / "configs" / "guidelines.md").read_text(encoding="utf-8")
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


class Client:
    """A few REST calls with the token in the header; errors without the token."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0, token_env: str = TOKEN_ENV):
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get(token_env, "")
        if not token:
            raise LabelStudioError(f"no Label Studio token for {self.url}: set {token_env} (Account & Settings > "
                                   f"Personal Access Token, or a legacy token); it is read from the environment only, "
                                   f"never from refava.toml")
        self.token_env = token_env
        self._token = token
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json"}
        self._authorise()

    @staticmethod
    def is_personal_access_token(token: str) -> bool:
        """Label Studio's personal access tokens are JWT refresh tokens (three base64url parts); legacy ones are
        40 hex digits."""
        parts = token.split(".")
        return len(parts) == 3 and all(re.fullmatch(r"[A-Za-z0-9_-]+", part) for part in parts)

    def _authorise(self) -> None:
        """Legacy tokens go in the header as they are; a personal access token is exchanged for a short-lived
        access token at /api/token/refresh/ (and again when that one expires)."""
        if not self.is_personal_access_token(self._token):
            self._headers["Authorization"] = f"Token {self._token}"
            return
        self._headers.pop("Authorization", None)
        body = self._request("POST", "/api/token/refresh/", {"refresh": self._token}, authorised=False)
        access = (body or {}).get("access") if isinstance(body, dict) else None
        if not access:
            raise LabelStudioError(f"Label Studio at {self.url} gave no access token for the personal access token "
                                   f"in {self.token_env}")
        self._headers["Authorization"] = f"Bearer {access}"

    def call(self, method: str, path: str, *, json: object = None, params: dict | None = None):
        """One REST call (standard library only); the token is sent in a header and never shown."""
        try:
            return self._request(method, path, json, params=params)
        except _Expired:
            self._authorise()                  # a personal access token's access token lasts minutes
            return self._request(method, path, json, params=params)

    def _request(self, method: str, path: str, json: object = None, *, params: dict | None = None,
                 authorised: bool = True):
        import json as jsonlib
        import urllib.error
        import urllib.parse
        import urllib.request

        full = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = jsonlib.dumps(json).encode() if json is not None else None
        request = urllib.request.Request(full, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise LabelStudioError(f"cannot reach Label Studio at {self.url} ({type(exc).__name__}); is the server "
                                   f"running? (tools/labelstudio.sh start)") from None
        if status == 401 and authorised and self._headers.get("Authorization", "").startswith("Bearer "):
            raise _Expired()
        if status in (401, 403):
            raise LabelStudioError(f"Label Studio at {self.url} refused the token (HTTP {status}): check "
                                   f"{self.token_env}")
        if status == 404:
            raise LabelStudioError(f"Label Studio at {self.url}: {method} {path} not found (HTTP 404)")
        if status >= 400:
            raise LabelStudioError(f"Label Studio at {self.url}: {method} {path} failed with HTTP {status}: "
                                   f"{body[:300].decode(errors='replace')}")
        if not body:
            return None
        try:
            return jsonlib.loads(body)
        except ValueError:
            raise LabelStudioError(f"Label Studio at {self.url}: {method} {path} answered non-JSON ({len(body)} "
                                   f"bytes); a truncated or proxied response?") from None

    def project(self, stage: str, project_id: int, workspace: str = "") -> int:
        """The stage's project: ``project_id`` if it exists on the server, else a new one titled with the stage and
        the workspace's name (several builds on one server stay apart); returns its id."""
        if project_id:
            try:
                self.call("GET", f"/api/projects/{project_id}")
                return project_id
            except LabelStudioError as exc:
                if "404" not in str(exc):
                    raise
        title = f"{TITLES[stage]} ({workspace})" if workspace else TITLES[stage]
        created = self.call("POST", "/api/projects", json={
            "title": title[:50], "label_config": config_path(stage).read_text(),
            "expert_instruction": guidelines_html(), "show_instruction": True})
        return int(created["id"])

    def local_storage(self, project_id: int, folder: Path) -> None:
        existing = self.call("GET", "/api/storages/localfiles", params={"project": project_id}) or []
        if any(Path(s.get("path", "")) == folder for s in existing):
            return
        self.call("POST", "/api/storages/localfiles", json={"project": project_id, "path": str(folder),
                                                            "use_blob_urls": False, "title": "refava keyframes"})

    def tasks(self, project_id: int) -> list[dict]:
        out, page = [], 1
        while True:
            body = self.call("GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": 500})
            items = body.get("tasks", body) if isinstance(body, dict) else body
            out.extend(items)
            if not isinstance(body, dict) or len(items) < 500:
                return out
            page += 1

    def import_tasks(self, project_id: int, tasks: list[dict]) -> int:
        if not tasks:
            return 0
        body = self.call("POST", f"/api/projects/{project_id}/import", json=tasks)
        return int((body or {}).get("task_count", len(tasks)))

    def status(self, path: str) -> int:
        """The HTTP status of a GET of ``path`` (with the token), without reading it as JSON: whether the server
        serves a file."""
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.url + path, method="GET", headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError):
            raise LabelStudioError(f"cannot reach Label Studio at {self.url}; is the server running?") from None

    def users(self) -> dict[int, str]:
        """{user id: email} of the server's accounts: answers are attributed to emails, stable across servers."""
        body = self.call("GET", "/api/users") or []
        items = body.get("results", body) if isinstance(body, dict) else body
        return {int(u["id"]): u["email"] for u in items if isinstance(u, dict) and u.get("email") and "id" in u}

    def export(self, project_id: int) -> list[dict]:
        """Full JSON export of every task (not JSON_MIN: it loses which region an answer belongs to)."""
        body = self.call("GET", f"/api/projects/{project_id}/export",
                         params={"exportType": "JSON", "download_all_tasks": "true"})
        if not isinstance(body, list):
            raise LabelStudioError(f"Label Studio at {self.url}: the export of project {project_id} is not a list of "
                                   f"tasks")
        return body


class _Expired(Exception):
    """The access token obtained for a personal access token has expired."""


@dataclass
class PushResult:
    stage: str
    project_id: int
    added: int = 0
    existing: int = 0
    repaired: int = 0
    duplicates: int = 0
    skipped: dict = field(default_factory=dict)


def _image_url(relative: Path, name: str) -> str:
    return f"/data/local-files/?d={(relative / name).as_posix()}"


def served_path(client: "Client", ws, folder: Path) -> Path:
    """The path of ``folder`` relative to the server's local-files document root, found by asking the server for
    one of its keyframes: under $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT when set, else under the workspace or one
    of the folders above it.  A document root that serves none of them is an error that says what to do."""
    sample = next(iter(sorted(folder.glob("*.jpg"))), None)
    roots = [Path(os.environ[ROOT_ENV]).resolve()] if os.environ.get(ROOT_ENV) else [ws.root, *ws.root.parents]
    candidates = []
    for root in roots:
        try:
            candidates.append(folder.relative_to(root))
        except ValueError:
            continue
    if sample is None:                  # nothing to ask with: the first candidate, as before
        if not candidates:
            raise LabelStudioError(f"{folder} is outside {ROOT_ENV}={roots[0]}: set it to the server's document root")
        return candidates[0]
    for relative in candidates:
        if client.status(_image_url(relative, sample.name)) == 200:
            return relative
    tried = ", ".join(str(r) for r in roots[:4])
    raise LabelStudioError(
        f"Label Studio at {client.url} does not serve the keyframes under {folder} (asked for {sample.name} under "
        f"each of {tried}{', ...' if len(roots) > 4 else ''}: not found): start it with "
        f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to the "
        f"workspace or a folder above it (tools/labelstudio.sh start does), or set {ROOT_ENV} here to the server's "
        f"document root. No task was added")


def _repair(client: "Client", tasks: list[dict], folder: Path, relative: Path) -> int:
    """Point the images of the project's ``tasks`` that do not load (pushed with a wrong document root) at the
    path that does; their answers are kept.  Returns how many were repaired."""
    repaired = 0
    for task in tasks:
        data = task.get("data") or {}
        name = Path(str(data.get("image", "")).split("d=", 1)[-1]).name
        right = _image_url(relative, name)
        if name and data.get("image") != right and (folder / name).exists():
            client.call("PATCH", f"/api/tasks/{task['id']}", json={"data": {**data, "image": right}})
            repaired += 1
    return repaired


def _annotated(task: dict) -> bool:
    """Whether anyone annotated the task, a skip included (the verify plan's "answered" leaves skips out: a skip is
    no answer for a slot, but it is someone's record, never deleted)."""
    return bool(task.get("total_annotations") or task.get("cancelled_annotations") or task.get("annotations"))


def _remove_duplicates(client: "Client", tasks: list[dict], field: str) -> tuple[list[dict], int]:
    """Delete the unannotated copies among the project's ``tasks`` of tasks imported twice (the same ``field`` of
    their data: a clip, a verify task key), as a push killed after sending its import and rerun before the server
    committed it leaves them: one task per value is left, an annotated one where there is one (the oldest
    otherwise); an annotated task is never deleted.  Returns the tasks left and how many were deleted."""
    copies: dict[str, list[dict]] = {}
    for task in tasks:
        value = (task.get("data") or {}).get(field)
        if value:
            copies.setdefault(str(value), []).append(task)
    deleted: set[int] = set()
    for same in copies.values():
        same.sort(key=lambda t: (not _annotated(t), t["id"]))           # annotated first, then the oldest
        for task in same[1:]:
            if not _annotated(task):
                client.call("DELETE", f"/api/tasks/{task['id']}")
                deleted.add(task["id"])
    return [t for t in tasks if t["id"] not in deleted], len(deleted)


def _rect(box) -> dict:
    x1, y1, x2, y2 = box
    return {"x": x1 * 100, "y": y1 * 100, "width": (x2 - x1) * 100, "height": (y2 - y1) * 100, "rotation": 0}


def _stored_keyframes(ws, clip_ids) -> dict[str, bytes]:
    """{clip id: its stored keyframe JPEG}, read once per movie; clips of a movie without a frame store are left
    out (the callers count them as skipped)."""
    from ..framestore import clean_path, read_keyframes

    by_movie: dict[str, set[str]] = {}
    for clip_id in clip_ids:
        by_movie.setdefault(clip_id.rsplit("___", 1)[0], set()).add(clip_id)
    out: dict[str, bytes] = {}
    for video_id, clips in sorted(by_movie.items()):
        frames = clean_path(ws.root, video_id)
        if frames.exists():
            out.update(read_keyframes(frames, clips))
    return out


def _write_keyframes(ws, clips: dict[str, list], folder: Path) -> None:
    """The describe stage's keyframe JPEGs (as stored) under the workspace's labelstudio folder."""
    from ..fsutil import write_bytes_atomic

    folder.mkdir(parents=True, exist_ok=True)
    for clip_id, data in _stored_keyframes(ws, [c for c in clips if not (folder / f"{c}.jpg").exists()]).items():
        write_bytes_atomic(folder / f"{clip_id}.jpg", data)


def _write_numbered(ws, boxes: dict[str, tuple], entries: list[tuple[str, dict]], folder: Path) -> set[str]:
    """One numbered keyframe per verify task, named by the task's opaque image name, its boxes numbered in the
    task's own order; returns the task keys whose keyframe is stored."""
    import cv2
    import numpy as np

    from ..fsutil import write_bytes_atomic

    folder.mkdir(parents=True, exist_ok=True)
    keyframes = _stored_keyframes(ws, {e["clip_id"] for _, e in entries})
    done: set[str] = set()
    for task, entry in entries:
        data = keyframes.get(entry["clip_id"])
        if data is None:
            continue
        target = folder / entry["image"]
        if not target.exists():
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            h, w = image.shape[:2]
            for number, person in entry["box_numbers"].items():
                x1, y1, x2, y2 = boxes[f"{entry['clip_id']}___{person}"]
                p1, p2 = (int(x1 * w), int(y1 * h)), (int(x2 * w), int(y2 * h))
                cv2.rectangle(image, p1, p2, (0, 255, 255), 2)
                cv2.putText(image, number, (p1[0] + 3, p1[1] + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2)
            write_bytes_atomic(target, cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        done.add(task)
    return done


VERIFY_MAP = Path("labelstudio") / "verify_tasks.json"


def load_verify_map(ws) -> dict[str, dict]:
    """{task key: {instance_id, clip_id, text, slot, kind, box_numbers, image}}: the answers to verify tasks, kept in
    the workspace only (the verifier sees the numbered keyframe, the numbers and the expression; keys, image names,
    numbering and push order come from the workspace's secret, see ``blind``)."""
    path = ws.root / VERIFY_MAP
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise LabelStudioError(f"{path}: not valid JSON ({exc}); it maps verify tasks to instances: restore it from "
                               f"a backup, or push the verify stage again with --all") from None


def add_verify_map(ws, path: Path) -> int:
    """Merge another copy of a verify map (a backup, or the map that came with exported tasks) into the workspace's;
    a key that maps to a different answer is an error and nothing is merged.  Returns the number of new keys."""
    from ..fsutil import write_json_atomic
    from ..io import InputError, read_json

    try:
        given = read_json(path, what="verify task map")
    except InputError as exc:
        raise LabelStudioError(str(exc)) from None
    if not isinstance(given, dict) or not all(isinstance(v, dict) and "instance_id" in v for v in given.values()):
        raise LabelStudioError(f"{path}: expected a verify task map ({{task key: {{instance_id, box_numbers, ...}}}}), "
                               f"found {type(given).__name__}")
    mapping = load_verify_map(ws)
    clash = sorted(k for k, v in given.items() if k in mapping and mapping[k] != v)
    if clash:
        raise LabelStudioError(f"{path}: {len(clash)} task key(s) map to other answers than in {ws.root / VERIFY_MAP} "
                               f"(first: {clash[0]}); nothing merged: is this another workspace's map?")
    new = {k: v for k, v in given.items() if k not in mapping}
    if new:
        write_json_atomic(ws.root / VERIFY_MAP, {**mapping, **new})
    return len(new)


def load_gold(ws) -> dict[str, str]:
    """The lead's gold file ([annotation] gold): {instance_id: expression} of answers known for certain, used as
    honeypots.  A JSON list of {"instance_id", "expression"}."""
    from ..io import InputError, read_json
    from ..records import Instances

    name = ws.config["annotation"]["gold"]
    if not name:
        return {}
    path = ws.path(name)
    try:
        items = read_json(path, what="gold file")
    except InputError as exc:
        raise LabelStudioError(f"{exc}; [annotation] gold names it") from None
    known = {i.instance_id for i in Instances.from_parquet(ws.table("instances"))}
    out = {}
    for n, item in enumerate(items if isinstance(items, list) else [None]):
        if not isinstance(item, dict) or not isinstance(item.get("expression"), str) or \
                item.get("instance_id") not in known:
            raise LabelStudioError(f"{path}: entry {n}: expected {{\"instance_id\": an instance of this workspace, "
                                   f"\"expression\": text}}, found {str(item)[:120]}; fix the gold file")
        out[item["instance_id"]] = item["expression"]
    return out


def _describe_work(ws, instances: list) -> set[str] | None:
    """The clips with a person lacking an accepted expression (under the workspace's rules); None: no annotations
    yet."""
    from .checks import Rules, check_instances
    from .io import read_annotations

    rows = read_annotations(ws.table("annotations"))
    if not rows:
        return None
    return {r["clip_id"] for r in check_instances(instances, rows, Rules.from_config(ws.config))
            if r["status"] != "accepted"}


def _attach_storage(client: "Client", project_id: int, folder: Path) -> None:
    """Make the project serve ``folder`` (local files); a server whose document root is elsewhere is a message."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        client.local_storage(project_id, folder)
    except LabelStudioError as exc:
        if "HTTP 400" not in str(exc):
            raise
        raise LabelStudioError(
            f"Label Studio at {client.url} does not serve the keyframes under {folder}: the folder is outside its "
            f"local-files document root (it refused the storage). Start it with "
            f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to the "
            f"workspace or a folder above it (tools/labelstudio.sh start does), or move the workspace under its "
            f"document root. No task was added") from None


def _describe_tasks(clips: dict, work, present: set, folder: Path, relative: str, result: "PushResult") -> list:
    """One describe task per clip that is still work and not on the server yet (the rest counted in ``result``)."""
    tasks = []
    for clip_id in sorted(clips):
        if work is not None and clip_id not in work:
            result.skipped["every person has an accepted expression"] = result.skipped.get(
                "every person has an accepted expression", 0) + 1
            continue
        if clip_id in present:
            result.existing += 1
            continue
        if not (folder / f"{clip_id}.jpg").exists():
            result.skipped["no stored keyframe"] = result.skipped.get("no stored keyframe", 0) + 1
            continue
        people = sorted(clips[clip_id], key=lambda i: i.person_id)
        tasks.append({"data": {"image": _image_url(relative, f"{clip_id}.jpg"),
                               "clip_id": clip_id, "video_id": people[0].video_id,
                               "timestamp": people[0].timestamp},
                      "predictions": [{"model_version": "ava-ground-truth", "score": 1.0, "result": [
                          {"id": f"person_{p.person_id}", "from_name": "box", "to_name": "image",
                           "type": "rectangle", "value": _rect(p.box_xyxy)} for p in people]}]})
    return tasks


def push(ws, stage: str, client: Client, *, log: Callable[[str], None] = print, resend: bool = False) -> PushResult:
    """Create or update the stage's project, serve keyframes, import the tasks that are still work and not there
    yet (``resend``: every task, again).  Verify tasks are blind (see :mod:`refava.annotate.blind`): opaque keys and
    image names, boxes numbered per task, pushed in a secret order, honeypots among them; the answers stay in the
    workspace (:func:`load_verify_map`)."""
    from ..fsutil import write_json_atomic
    from ..records import Instances
    from .verifyplan import task_data

    folder = (ws.root / "labelstudio" / ("keyframes" if stage == "describe" else "keyframes_numbered")).resolve()
    instances = list(Instances.from_parquet(ws.table("instances")))
    clips: dict[str, list] = {}
    for inst in instances:
        clips.setdefault(inst.clip_id, []).append(inst)
    key = f"{stage}_project"
    project_id = client.project(stage, int(ws.config["labelstudio"].get(key) or 0), ws.root.name)
    if project_id != ws.config["labelstudio"].get(key):
        ws.config["labelstudio"][key] = project_id
        ws.save()
    _attach_storage(client, project_id, folder)
    result = PushResult(stage, project_id)
    # the project's tasks, listed once for the clean-up, what is there already and the repair
    on_server, result.duplicates = _remove_duplicates(client, client.tasks(project_id),
                                                      "clip_id" if stage == "describe" else "task_key")
    if result.duplicates:
        log(f"{stage}: {result.duplicates} duplicate task(s) removed (unanswered copies of tasks imported twice, as "
            f"an interrupted push can leave them)")
    if stage == "describe":
        present = set() if resend else {(t.get("data") or {}).get("clip_id") for t in on_server}
        _write_keyframes(ws, clips, folder)
        relative = served_path(client, ws, folder)
        result.repaired = _repair(client, on_server, folder, relative)
        tasks = _describe_tasks(clips, None if resend else _describe_work(ws, instances), present, folder, relative,
                                result)
        result.added = client.import_tasks(project_id, tasks)
        log(f"{stage}: project {project_id}, {result.added} tasks added, {result.existing} already there"
            + (f", {result.repaired} repaired (their images did not load)" if result.repaired else ""))
        return result
    tasks = _verify_tasks(ws, [] if resend else on_server, project_id, instances, folder, result, resend, log)
    mapping = load_verify_map(ws)
    mapping.update({k: e for k, e in tasks})
    write_json_atomic(ws.root / VERIFY_MAP, mapping)      # before the tasks exist: every answer can be mapped
    relative = served_path(client, ws, folder)
    result.repaired = _repair(client, on_server, folder, relative)
    result.added = client.import_tasks(project_id, [{"data": task_data(_image_url(relative, e["image"]), k, e)}
                                                    for k, e in tasks])
    return result


def _verify_tasks(ws, server: list[dict], project_id: int, instances: list, folder: Path, result: PushResult,
                  resend: bool, log: Callable[[str], None]) -> list[tuple[str, dict]]:
    """Plan the verify tasks (:func:`refava.annotate.verifyplan.plan_verify`) against the project's tasks
    ``server`` and store their numbered keyframes."""
    from . import blind
    from .checks import Rules
    from .io import read_annotations
    from .verifyplan import plan_verify

    rows = read_annotations(ws.table("annotations"))
    pulled = {r["ls_task_id"] for r in rows if r["stage"] == "verify" and r["ls_project_id"] == project_id}
    plan = plan_verify(instances, rows, server, pulled, Rules.from_config(ws.config), blind.secret(ws.root),
                       mapping=load_verify_map(ws), share=float(ws.config["annotation"]["honeypot_share"]),
                       gold=load_gold(ws), resend=resend)
    stored = _write_numbered(ws, {i.instance_id: i.box_xyxy for i in instances}, plan.tasks, folder)
    tasks = [(k, e) for k, e in plan.tasks if k in stored]
    if len(tasks) < len(plan.tasks):
        plan.skipped["no stored keyframe"] = len(plan.tasks) - len(tasks)
    result.existing, result.skipped = plan.open, plan.skipped
    work = sum(e["kind"] == "work" for _, e in tasks)
    log(f"verify: project {project_id}, {len(tasks)} tasks added ({work} expressions to verify, "
        f"{len(tasks) - work} honeypots of {plan.honeypot_candidates} known answers), {plan.open} already there"
        + (f" ({plan.unpulled} answered but not pulled yet: run `refava annotate pull`)" if plan.unpulled else ""))
    return tasks


def pull(ws, client: Client, *, verify_client: Client | None = None, log: Callable[[str], None] = print) -> dict:
    """Export both projects (full JSON; the verify project from its own server when it has one), keep the export
    files, and add new answers to the annotations table."""
    from ..fsutil import write_text_atomic
    from ..records import Instances
    from .io import merge_annotations
    from .convert import ls_task_to_annotations

    known = {i.instance_id for i in Instances.from_parquet(ws.table("instances"))}
    mapping = load_verify_map(ws)
    results = {}
    for stage in ("describe", "verify"):
        project_id = int(ws.config["labelstudio"].get(f"{stage}_project") or 0)
        if not project_id:
            continue
        server = verify_client if stage == "verify" and verify_client is not None else client
        users = server.users()
        tasks = server.export(project_id)
        path = ws.root / "labelstudio" / "exports" / f"{stage}_project{project_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(tasks))
        rows, problems = [], []
        for task in tasks:
            converted = ls_task_to_annotations(task, stage, source=f"{server.url} project {project_id}",
                                               known_instances=known, users=users, verify_map=mapping)
            rows.extend(converted.rows)
            problems.extend(converted.problems)
        merged = merge_annotations(ws.table("annotations"), rows, provenance={
            "stage": "annotate pull", "server": server.url, "project": project_id})
        merged.problems.extend(problems)
        results[stage] = merged
        log(f"{stage}: {len(tasks)} tasks exported to {path}; {merged.added} new answers, {merged.updated} updated, "
            f"{merged.unchanged} unchanged; {len(problems)} problem(s)")
        for p in problems[:10]:
            log(f"  {p}")
    return results


def server_url(ws, given: str | None = None) -> str:
    """The server: ``given`` (--url), else $LABEL_STUDIO_URL, else [labelstudio] url of refava.toml."""
    return given or os.environ.get(URL_ENV) or ws.config["labelstudio"]["url"]


def verify_client(ws, given: str | None = None, describe: Client | None = None) -> Client:
    """The verify stage's server: its own ([labelstudio.verify] url or $LABEL_STUDIO_VERIFY_URL, token from
    $LABEL_STUDIO_VERIFY_API_KEY) when one is set, so that verifiers never have an account where the descriptions
    are; else the describe server (``given``, --url, overrides the URL either way)."""
    separate = ws.config["labelstudio.verify"]["url"] or os.environ.get(VERIFY_URL_ENV)
    if separate:
        return Client(given or separate, token_env=VERIFY_TOKEN_ENV)
    if describe is not None and not given:
        return describe
    return Client(server_url(ws, given))
