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
    shows as the project's instructions before labelling."""
    import html

    text = (Path(__file__).resolve().parent / "configs" / "guidelines.md").read_text(encoding="utf-8")
    out, in_list = [], False
    for line in text.splitlines():
        stripped = line.strip()
        item = stripped.startswith(("- ", "* "))
        if in_list and not item:
            out.append("</ul>")
            in_list = False
        if stripped.startswith("#"):
            level = min(4, len(stripped) - len(stripped.lstrip("#")) + 1)
            out.append(f"<h{level}>{html.escape(stripped.lstrip('#').strip())}</h{level}>")
        elif item:
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{html.escape(stripped[2:])}</li>")
        elif stripped:
            out.append(f"<p>{html.escape(stripped)}</p>")
    if in_list:
        out.append("</ul>")
    return "\n".join(out)


class Client:
    """A few REST calls with the token in the header; errors without the token."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0):
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        if not token:
            raise LabelStudioError(f"no Label Studio token: set {TOKEN_ENV} (Account & Settings > Personal Access "
                                   f"Token, or a legacy token); it is read from the environment only, never from "
                                   f"refava.toml")
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
                                   f"in {TOKEN_ENV}")
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
            raise LabelStudioError(f"Label Studio at {self.url} refused the token (HTTP {status}): check {TOKEN_ENV}")
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


def _repair(client: "Client", project_id: int, folder: Path, relative: Path) -> int:
    """Point the images of the project's tasks that do not load (pushed with a wrong document root) at the path
    that does; their answers are kept.  Returns how many were repaired."""
    repaired = 0
    for task in client.tasks(project_id):
        data = task.get("data") or {}
        name = Path(str(data.get("image", "")).split("d=", 1)[-1]).name
        right = _image_url(relative, name)
        if name and data.get("image") != right and (folder / name).exists():
            client.call("PATCH", f"/api/tasks/{task['id']}", json={"data": {**data, "image": right}})
            repaired += 1
    return repaired


def _rect(box) -> dict:
    x1, y1, x2, y2 = box
    return {"x": x1 * 100, "y": y1 * 100, "width": (x2 - x1) * 100, "height": (y2 - y1) * 100, "rotation": 0}


def _write_keyframes(ws, clips: dict[str, list], folder: Path, numbered: bool) -> None:
    """Keyframe JPEGs (with numbered boxes for the verify stage) under the workspace's labelstudio folder."""
    import cv2
    import numpy as np

    from ..framestore import clean_path, read_keyframes
    from ..fsutil import write_bytes_atomic

    folder.mkdir(parents=True, exist_ok=True)
    by_movie: dict[str, list[str]] = {}
    for clip_id in clips:
        by_movie.setdefault(clip_id.rsplit("___", 1)[0], []).append(clip_id)
    for video_id, clip_ids in by_movie.items():
        frames = clean_path(ws.root, video_id)
        if not frames.exists():
            continue
        for clip_id, data in read_keyframes(frames, set(clip_ids)).items():
            target = folder / f"{clip_id}.jpg"
            if target.exists():
                continue
            if numbered:
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                h, w = image.shape[:2]
                for n, inst in enumerate(sorted(clips[clip_id], key=lambda i: i.person_id), start=1):
                    x1, y1, x2, y2 = inst.box_xyxy
                    p1, p2 = (int(x1 * w), int(y1 * h)), (int(x2 * w), int(y2 * h))
                    cv2.rectangle(image, p1, p2, (0, 255, 255), 2)
                    cv2.putText(image, str(n), (p1[0] + 3, p1[1] + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2)
                data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            write_bytes_atomic(target, data)


VERIFY_MAP = Path("labelstudio") / "verify_tasks.json"


def verify_key(instance_id: str, text: str) -> str:
    """The opaque key of a verify task: it names neither the instance nor the person, and changes with the text."""
    import hashlib

    return hashlib.sha256(f"{instance_id}\x1f{text}".encode()).hexdigest()[:20]


def load_verify_map(ws) -> dict[str, dict]:
    """{task key: {instance_id, clip_id, text, box_numbers}}: the answers to verify tasks, kept in the workspace
    only (the verifier sees the image, the numbers and the expression, nothing that tells which box is meant)."""
    path = ws.root / VERIFY_MAP
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise LabelStudioError(f"{path}: not valid JSON ({exc}); it maps verify tasks to instances: restore it from "
                               f"a backup, or push the verify stage again with --all") from None


def _work(ws, stage: str, instances: list) -> set[str] | None:
    """What still needs the stage: describe, the clips with a person lacking an accepted expression; verify, the
    instances whose current text passed the automatic checks and is not verified yet.  None: no annotations yet."""
    from .checks import check_instances
    from .io import read_annotations

    rows = read_annotations(ws.table("annotations")) if ws.table("annotations").exists() else []
    if not rows:
        return None
    status = check_instances(instances, rows)
    if stage == "describe":
        return {r["clip_id"] for r in status if r["status"] != "accepted"}
    return {r["instance_id"] for r in status if r["status"] == "pending_verification"}


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
    yet (``resend``: every task, again).  Verify tasks carry an opaque key; the key's instance and box numbers stay
    in the workspace (:func:`load_verify_map`)."""
    from ..fsutil import write_json_atomic
    from ..records import Instances
    from .io import read_annotations

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
    present = set() if resend else {
        (t.get("data") or {}).get("clip_id" if stage == "describe" else "task_key") for t in client.tasks(project_id)}
    work = None if resend else _work(ws, stage, instances)
    tasks = []
    if stage == "describe":
        _write_keyframes(ws, clips, folder, numbered=False)
        relative = served_path(client, ws, folder)
        result.repaired = _repair(client, project_id, folder, relative)
        tasks = _describe_tasks(clips, work, present, folder, relative, result)
    else:
        rows = read_annotations(ws.table("annotations")) if ws.table("annotations").exists() else []
        latest: dict[str, dict] = {}
        for r in rows:
            if r["stage"] == "describe" and r["text"] and r["version"] >= latest.get(r["instance_id"], {}).get("version", -1):
                latest[r["instance_id"]] = r
        _write_keyframes(ws, {c: clips[c] for c in {r["clip_id"] for r in latest.values()} if c in clips}, folder,
                         numbered=True)
        relative = served_path(client, ws, folder)
        result.repaired = _repair(client, project_id, folder, relative)
        mapping = load_verify_map(ws)
        for iid, r in sorted(latest.items()):
            if work is not None and iid not in work:
                why = "failed a check or already verified at this text"
                result.skipped[why] = result.skipped.get(why, 0) + 1
                continue
            key = verify_key(iid, r["text"])
            if key in present:
                result.existing += 1
                continue
            people = sorted(clips.get(r["clip_id"], []), key=lambda i: i.person_id)
            if not people or not (folder / f"{r['clip_id']}.jpg").exists():
                result.skipped["no stored keyframe"] = result.skipped.get("no stored keyframe", 0) + 1
                continue
            numbers = {str(n): p.person_id for n, p in enumerate(people, start=1)}
            mapping[key] = {"instance_id": iid, "clip_id": r["clip_id"], "text": r["text"], "box_numbers": numbers}
            # what the verifier sees: the numbered keyframe, the expression, the numbers; nothing names the person
            tasks.append({"data": {"image": _image_url(relative, f"{r['clip_id']}.jpg"),
                                   "expression": r["text"], "task_key": key,
                                   "options": [{"value": n} for n in numbers] + [{"value": "none"}]}})
        write_json_atomic(ws.root / VERIFY_MAP, mapping)      # before the tasks exist: every answer can be mapped
    result.added = client.import_tasks(project_id, tasks)
    log(f"{stage}: project {project_id}, {result.added} tasks added, {result.existing} already there"
        + (f", {result.repaired} repaired (their images did not load)" if result.repaired else ""))
    return result


def pull(ws, client: Client, *, log: Callable[[str], None] = print) -> dict:
    """Export both projects (full JSON), keep the export files, and add new answers to the annotations table."""
    from ..fsutil import write_text_atomic
    from ..records import Instances
    from .io import merge_annotations
    from .convert import ls_task_to_annotations

    known = {i.instance_id for i in Instances.from_parquet(ws.table("instances"))}
    users = client.users()
    mapping = load_verify_map(ws)
    results = {}
    for stage in ("describe", "verify"):
        project_id = int(ws.config["labelstudio"].get(f"{stage}_project") or 0)
        if not project_id:
            continue
        tasks = client.export(project_id)
        path = ws.root / "labelstudio" / "exports" / f"{stage}_project{project_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(tasks))
        rows, problems = [], []
        for task in tasks:
            converted = ls_task_to_annotations(task, stage, source=f"{client.url} project {project_id}",
                                               known_instances=known, users=users, verify_map=mapping)
            rows.extend(converted.rows)
            problems.extend(converted.problems)
        merged = merge_annotations(ws.table("annotations"), rows, provenance={
            "stage": "annotate pull", "server": client.url, "project": project_id})
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
