"""What keeps the verify stage blind and the packaged annotators pseudonymous: one per-workspace secret.

Every value a verifier can see is derived from the secret with HMAC-SHA256, so none of it can be recomputed from
what the verifier knows (clip ids, small person ids, the text): the task key, the file name of the numbered
keyframe, the order of the boxes' numbers and the order in which tasks are pushed.  The same secret salts the
pseudonymous annotator ids of the packaged dataset.

The secret is ``$REFAVA_ANNOTATION_SECRET`` when set (a team that shares one workspace across machines), else
``<workspace>/labelstudio/secret.key``, written once with mode 0600.  It never leaves the workspace: no table,
report, export or packaged file holds it, and the Label Studio server serves only the keyframe folders.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import random
from pathlib import Path

SECRET_ENV = "REFAVA_ANNOTATION_SECRET"
SECRET_FILE = Path("labelstudio") / "secret.key"


def secret(root: Path) -> bytes:
    """The workspace's secret (see the module docstring); created on first use."""
    given = os.environ.get(SECRET_ENV)
    if given:
        return given.encode()
    path = Path(root) / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = os.urandom(32).hex().encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value + b"\n")
    try:
        os.link(tmp, path)                 # two first uses at once: one secret wins, both read it
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()


def _mac(key: bytes, *parts: object) -> str:
    return hmac.new(key, "\x1f".join(str(p) for p in parts).encode(), hashlib.sha256).hexdigest()


def task_key(key: bytes, instance_id: str, text: str, slot: str) -> str:
    """The opaque key of one verify task: instance, text and slot (a second verifier's task, a honeypot) under the
    secret.  Without the secret it cannot be tied to an instance, even knowing every instance and text."""
    return _mac(key, "task", instance_id, text, slot)[:24]


def image_name(key: bytes, task: str) -> str:
    """The numbered keyframe's file name for a task: names neither the clip nor the person."""
    return _mac(key, "image", task)[:24] + ".jpg"


def box_numbers(key: bytes, task: str, person_ids: list[int]) -> dict[str, int]:
    """{shown number: person id}: the clip's boxes numbered in an order drawn per task from the secret, so the
    number of the person meant tells nothing (not the person id's rank, not the box's place)."""
    people = sorted(person_ids)
    random.Random(_mac(key, "boxes", task)).shuffle(people)
    return {str(n): pid for n, pid in enumerate(people, start=1)}


def push_order(key: bytes, tasks: list[str]) -> list[str]:
    """Task keys in the order they are pushed: sorted by their HMAC, unrelated to instance, clip or person."""
    return sorted(tasks, key=lambda t: _mac(key, "order", t))


def pseudonym(key: bytes, annotator: str) -> str:
    """A stable pseudonymous id for an annotator (an account email): the same in every build of this workspace,
    unrelated across workspaces.  The RAVAR authors' release keeps its name."""
    if annotator == "ravar-authors":
        return annotator
    return "annotator-" + _mac(key, "annotator", annotator)[:10]
