"""Issue 25: the stage-contract restructuring moves code and changes no data.  The sample pipeline's tables, frame
stores, packaged dataset and exports are compared with the digests recorded on the code before it
(``tests/data/sample_digests.json``, made by ``python tests/identity.py --record`` at commit 34f2343)."""
from __future__ import annotations

import json

from identity import RECORD, digests, make, writer_versions


def test_the_sample_pipeline_gives_the_recorded_bytes(tmp_path):
    record = json.loads(RECORD.read_text())
    now = digests(make(tmp_path))
    assert sorted(now) == sorted(record["files"]), "the pipeline writes other files than before"
    changed = sorted(k for k in now if now[k]["content"] != record["files"][k]["content"])
    assert not changed, f"{len(changed)} file(s) hold other data than before: {changed}"
    if writer_versions() == record["writers"]:
        changed = sorted(k for k in now if now[k]["bytes"] != record["files"][k]["bytes"])
        assert not changed, f"{len(changed)} file(s) have other bytes than before: {changed[:10]}"
