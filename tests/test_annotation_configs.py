"""The Label Studio configs in annotation/ agree with the exports refava reads and the sample corpus writes."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

ANNOTATION = Path(__file__).parent.parent / "annotation"


def control_names(path: Path) -> dict[str, str]:
    root = ET.parse(path).getroot()
    return {el.get("name"): el.tag for el in root.iter() if el.get("name")}


def test_describe_config_names_match_the_sample_export(sample_corpus):
    names = control_names(ANNOTATION / "describe.xml")
    assert names["image"] == "Image" and names["box"] == "Rectangle"
    assert names["expression"] == "TextArea" and names["flags"] == "Choices"
    root = ET.parse(ANNOTATION / "describe.xml").getroot()
    text_area = next(el for el in root.iter("TextArea"))
    assert text_area.get("perRegion") == "true" and text_area.get("required") == "true"   # nobody left undescribed
    flags = {c.get("alias") for c in root.iter("Choice")}                    # stored by alias, shown readably
    assert flags == {"box_wrong", "not_a_person", "not_unique"}
    assert all(" " in c.get("value") for c in root.iter("Choice"))
    export = json.loads((sample_corpus / "annotations" / "labelstudio_describe_export.json").read_text())
    used = {r["from_name"] for task in export for a in task["annotations"] for r in a["result"]}
    assert used <= set(names)
    used_flags = {c for task in export for a in task["annotations"] for r in a["result"]
                  if r["from_name"] == "flags" for c in r["value"]["choices"]}
    assert used_flags <= flags


def test_verify_config_names_match_the_sample_export(sample_corpus):
    names = control_names(ANNOTATION / "verify.xml")
    assert names["pick"] == "Choices" and names["expression"] == "Text"
    export = json.loads((sample_corpus / "annotations" / "labelstudio_verify_export.json").read_text())
    for task in export[:20]:
        assert set(task["data"]) == {"image", "expression", "task_key", "options"}     # as push sends them
        pick = task["annotations"][0]["result"][0]
        assert pick["from_name"] == "pick"
        assert pick["value"]["choices"][0] in {o["value"] for o in task["data"]["options"]}


def test_guidelines_have_the_required_examples():
    text = (ANNOTATION / "guidelines.md").read_text()
    for example in ("the woman in a red coat on the right", "the man who is talking", "the person"):
        assert example in text
