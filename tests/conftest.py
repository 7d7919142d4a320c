"""Shared fixtures: real AVA files, a generated sample corpus, tiny indexed videos, workspaces."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
# one annotation secret for every workspace the tests build, so that workspaces built apart package the same
# pseudonyms (tests of the secret itself unset it)
os.environ.setdefault("REFAVA_ANNOTATION_SECRET", "refava-tests")

AVA_DATA = HERE / "data" / "ava"


@pytest.fixture(scope="session")
def ava_data() -> Path:
    return AVA_DATA


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory) -> Path:
    """The sample corpus, generated once per test session (about 5 s)."""
    from refava.sample_corpus import make_sample_corpus

    out = tmp_path_factory.mktemp("sample")
    make_sample_corpus(out, log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def sample_workspace_template(sample_corpus, tmp_path_factory) -> Path:
    """A workspace over the sample corpus, ingested once; tests copy it before changing anything."""
    from refava.ingest import ingest
    from refava.workspace import init_workspace

    root = tmp_path_factory.mktemp("ws")
    ann = sample_corpus / "annotations"
    init_workspace(root, overrides={"ava": {
        "movies_dir": str(sample_corpus / "movies"), "annotations": [str(ann / "ava_sample_v2.2.csv")],
        "label_map": str(ann / "ava_action_list_v2.2.pbtxt"),
        "excluded": [str(ann / "ava_excluded_timestamps_sample.csv")]}})
    ingest(root, sample_corpus / "movies", [ann / "ava_sample_v2.2.csv"], label_map=ann / "ava_action_list_v2.2.pbtxt",
           excluded_files=[ann / "ava_excluded_timestamps_sample.csv"], progress=False, log=lambda *_: None)
    return root
