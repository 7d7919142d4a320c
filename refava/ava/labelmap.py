"""AVA label maps: the 80-class ``label {}`` pbtxt, the 60-class ``item {}`` pbtxt, and the csv form."""
from __future__ import annotations

import csv as _csv
import io
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import AnnotationFormatError
from .text import read_text

ACTION_GROUPS = ("PERSON_MOVEMENT", "OBJECT_MANIPULATION", "PERSON_INTERACTION")


@dataclass(frozen=True)
class ActionClass:
    """One AVA action: id (1..80), name, and group (``label_type``; None in the 60-class ``item`` form)."""

    id: int
    name: str
    label_type: str | None = None


_TOKEN = re.compile(r'\s*(?:(?P<open>\{)|(?P<close>\})|(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*:\s*'
                    r'(?:"(?P<str>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s{}]+))|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<comment>#[^\n]*))')


def _parse_pbtxt(text: str, where: str) -> list[tuple[str, dict[str, str], int]]:
    blocks: list[tuple[str, dict[str, str], int]] = []
    pos, current, current_name, start_line = 0, None, None, 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        line = text.count("\n", 0, pos) + 1
        if not m or m.end() == pos:
            raise AnnotationFormatError(f"{where} line {line}: expected 'label {{ ... }}' or 'item {{ ... }}' blocks, "
                                        f"found {text[pos:pos + 30]!r}")
        pos = m.end()
        if m.group("comment"):
            continue
        if m.group("name"):
            if current is not None:
                raise AnnotationFormatError(f"{where} line {line}: expected 'key: value' inside a block, found {m.group('name')!r}")
            current_name, start_line = m.group("name"), line
        elif m.group("open"):
            if current_name is None or current is not None:
                raise AnnotationFormatError(f"{where} line {line}: expected a block name before '{{'")
            current = {}
        elif m.group("close"):
            if current is None:
                raise AnnotationFormatError(f"{where} line {line}: '}}' without an open block")
            blocks.append((current_name, current, start_line))
            current, current_name = None, None
        else:
            if current is None:
                raise AnnotationFormatError(f"{where} line {line}: expected a block, found {m.group('key')!r} outside one")
            value = m.group("str") if m.group("str") is not None else m.group("bare")
            current[m.group("key")] = value
    if current is not None or current_name is not None:
        raise AnnotationFormatError(f"{where}: the file ends inside block {current_name!r} (truncated?)")
    return blocks


def _classes_from_blocks(blocks, where: str) -> list[ActionClass]:
    classes = []
    for block_name, fields, line in blocks:
        id_key = "label_id" if block_name == "label" else "id"
        if block_name not in ("label", "item"):
            raise AnnotationFormatError(f"{where} line {line}: expected 'label' or 'item' blocks, found {block_name!r}")
        name = fields.get("name", fields.get("display_name"))
        if name is None or id_key not in fields:
            raise AnnotationFormatError(f"{where} line {line}: a {block_name} block needs 'name' and '{id_key}', found {sorted(fields)}")
        try:
            class_id = int(fields[id_key])
        except ValueError:
            raise AnnotationFormatError(f"{where} line {line}: expected an integer {id_key}, found {fields[id_key]!r}") from None
        label_type = fields.get("label_type")
        if label_type is not None and label_type not in ACTION_GROUPS:
            raise AnnotationFormatError(f"{where} line {line}: expected label_type in {ACTION_GROUPS}, found {label_type!r}")
        classes.append(ActionClass(class_id, name, label_type))
    return classes


def _classes_from_csv(path: Path) -> list[ActionClass]:
    with io.StringIO(read_text(path, "label map"), newline="") as fh:
        reader = _csv.reader(fh)
        header = next(reader, None)
        if header != ["label_id", "label_name", "label_type"]:
            raise AnnotationFormatError(f"{path.name} line 1: expected header 'label_id,label_name,label_type', found {header}")
        classes = []
        for line_no, cols in enumerate(reader, start=2):
            if not cols:
                continue
            if len(cols) != 3:
                raise AnnotationFormatError(f"{path.name} line {line_no}: expected 3 columns, found {len(cols)}")
            try:
                class_id = int(cols[0])
            except ValueError:
                raise AnnotationFormatError(f"{path.name} line {line_no}: expected an integer label_id, found {cols[0]!r}") from None
            if cols[2] not in ACTION_GROUPS:
                raise AnnotationFormatError(f"{path.name} line {line_no}: expected label_type in {ACTION_GROUPS}, found {cols[2]!r}")
            classes.append(ActionClass(class_id, cols[1], cols[2]))
        return classes


def load_label_map(path: str | os.PathLike) -> dict[int, ActionClass]:
    """Read an AVA label map in any of its three forms; return {action id: ActionClass}, sorted by id.

    >>> labels = load_label_map("tests/data/ava/ava_action_list_v2.0.csv")   # doctest: +SKIP
    >>> labels[12].name, labels[12].label_type
    ('stand', 'PERSON_MOVEMENT')
    """
    path = Path(path)
    if not path.exists():
        raise AnnotationFormatError(f"{path}: label map not found; give an AVA action list (.pbtxt or .csv)")
    if path.suffix == ".csv":
        classes = _classes_from_csv(path)
    else:
        classes = _classes_from_blocks(_parse_pbtxt(read_text(path, "label map"), path.name), path.name)
    if not classes:
        raise AnnotationFormatError(f"{path}: expected at least one action class, found none")
    out: dict[int, ActionClass] = {}
    for cls in classes:
        if cls.id in out:
            raise AnnotationFormatError(f"{path.name}: action id {cls.id} defined twice ({out[cls.id].name!r}, {cls.name!r})")
        out[cls.id] = cls
    return dict(sorted(out.items()))


def save_label_map_pbtxt(classes: dict[int, ActionClass], path: str | os.PathLike) -> None:
    """Write the 80-class ``label {}`` pbtxt form (the official ava_action_list_v2.2.pbtxt layout)."""
    parts = []
    for cls in classes.values():
        body = f'  name: "{cls.name}"\n  label_id: {cls.id}\n'
        if cls.label_type:
            body += f"  label_type: {cls.label_type}\n"
        parts.append("label {\n" + body + "}\n")
    Path(path).write_text("".join(parts), encoding="utf-8")


def default_label_map() -> dict[int, ActionClass]:
    """The 80 AVA actions shipped with refava (copied from ava_action_list_v2.0.csv, CC BY 4.0)."""
    with resources.as_file(resources.files("refava").joinpath("data", "ava_action_list_v2.0.csv")) as path:
        return load_label_map(path)
