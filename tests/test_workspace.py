"""Workspace discovery and refava.toml."""
from __future__ import annotations

import pytest

from refava.errors import ConfigError, WorkspaceNotFoundError
from refava.workspace import CONFIG_NAME, Workspace, find_workspace, init_workspace


def test_init_then_find_from_a_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv("REFAVA_WORKSPACE", raising=False)
    ws = init_workspace(tmp_path / "ws", overrides={"ava": {"movies_dir": "m", "annotations": ["a.csv"]}})
    sub = ws.root / "tables" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    found = find_workspace()
    assert found.root == ws.root
    assert found.paths("ava", "annotations") == [ws.root / "a.csv"]
    assert found.path(found.config["ava"]["movies_dir"]) == ws.root / "m"
    assert found.config["clips"]["frames"] == 8


def test_explicit_and_environment_workspaces(tmp_path, monkeypatch):
    a = init_workspace(tmp_path / "a")
    b = init_workspace(tmp_path / "b")
    monkeypatch.chdir(a.root)
    monkeypatch.setenv("REFAVA_WORKSPACE", str(b.root))
    assert find_workspace().root == b.root
    assert find_workspace(a.root).root == a.root


def test_no_workspace_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("REFAVA_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceNotFoundError, match="refava init"):
        find_workspace()


@pytest.mark.parametrize("text, message", [
    ("[ava]\nmovie_dir = 'x'\n", "unknown key 'movie_dir' in \\[ava\\]"),
    ("[clipz]\nframes = 8\n", "unknown section \\[clipz\\]"),
    ("[clips]\nframes = 'eight'\n", "expected int"),
    ("[clips\n", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    (tmp_path / CONFIG_NAME).write_text(text)
    with pytest.raises(ConfigError, match=message):
        Workspace.load(tmp_path)


def test_init_refuses_to_overwrite(tmp_path):
    init_workspace(tmp_path)
    with pytest.raises(ConfigError, match="exists already"):
        init_workspace(tmp_path)
    init_workspace(tmp_path, exist_ok=True)


def test_a_single_string_where_a_list_is_expected(tmp_path):
    (tmp_path / CONFIG_NAME).write_text("[ava]\nannotations = 'one.csv'\n")
    assert Workspace.load(tmp_path).config["ava"]["annotations"] == ["one.csv"]
