"""The workspace: one folder per RefAVA build, found like a git repository (``refava.toml`` at its root).

Commands look for the workspace in ``-w DIR``, then ``$REFAVA_WORKSPACE``, then the current folder and its
parents.  Paths inside refava.toml are relative to the workspace root.  Secrets (API keys, tokens) are never
stored there; they come from environment variables.
"""
from __future__ import annotations

import copy
import os
from contextlib import contextmanager
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, ReadOnlyWorkspaceError, WorkspaceNotFoundError
from .fsutil import write_text_atomic

CONFIG_NAME = "refava.toml"
ENV_VAR = "REFAVA_WORKSPACE"
AVA_BASE_URL = "https://s3.amazonaws.com/ava-dataset"

DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "ava": {
        "movies_dir": "movies",
        "annotations": [],
        "label_map": "",
        "excluded": [],
        "file_list": "",
        "proposals": "",
    },
    "download": {"base_url": AVA_BASE_URL, "subset": "trainval", "checksums": "", "workers": 4},
    "clips": {"frames": 8, "short_side": 256, "keyframe_short_side": 0, "jpeg_quality": 90},
    "ingest": {"workers": 0},
    "labelstudio": {"url": "http://127.0.0.1:8080", "describe_project": 0, "verify_project": 0},
    "labelstudio.verify": {"url": ""},
    "annotation": {"verifiers_per_expression": 1, "consensus": "unanimous", "honeypot_share": 0.1,
                   "honeypot_min_answers": 3, "honeypot_min_accuracy": 0.8, "gold": ""},
    "llm": {"backend": "local", "model": "gemma3-270m", "base_url": ""},
    "seeds": {"splits": 0, "rephrase": 0, "corrupt": 0},
}

_COMMENTS = {
    "ava": "AVA inputs, relative to this folder: movies, ground-truth csv files, label map, excluded timestamps",
    "download": "where `refava download` fetches movies from (the official CVDF mirror by default)",
    "clips": "clip cutting: sampled frames per clip (90 = all), short side of sampled frames and keyframe (0 = as is)",
    "ingest": "parallel movies (0 = one per CPU core)",
    "labelstudio": "Label Studio server and project ids; the token comes from LABEL_STUDIO_API_KEY, never from here",
    "labelstudio.verify": "a second server for the verify stage, with the verifiers' accounts only (\"\" = the same "
                          "server); its token comes from LABEL_STUDIO_VERIFY_API_KEY",
    "annotation": "cross-check: verifiers per expression, consensus ('unanimous' or 'majority'), share of honeypot "
                  "tasks, the honeypot accuracy below which a verifier's answers do not count (after so many "
                  "answers), a gold file of known answers (instance_id, expression)",
    "llm": "rephrasing backend: 'local' (embedded llama.cpp), 'openai' (key from OPENAI_API_KEY) or an OpenAI-compatible base_url",
    "seeds": "seeds of the random steps",
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to refava.toml")


def dump_config(config: dict[str, dict[str, Any]]) -> str:
    """Serialise a two-level config dict to TOML (sections of scalars and lists), with comments."""
    out = ["# refava workspace: one RefAVA build. See `refava --help`; paths are relative to this file.\n"]
    flat: dict[str, dict[str, Any]] = {}
    for section, values in config.items():       # a table inside a section (as TOML parses [a.b]) is [a.b]
        flat[section] = {k: v for k, v in values.items() if not isinstance(v, dict)}
        flat.update({f"{section}.{k}": v for k, v in values.items() if isinstance(v, dict)})
    for section, values in flat.items():
        if section in _COMMENTS:
            out.append(f"# {_COMMENTS[section]}")
        out.append(f"[{section}]")
        for key, value in values.items():
            out.append(f"{key} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)


def _merge(defaults: dict, given: dict, where: str) -> dict:
    merged = copy.deepcopy(defaults)
    for section, values in given.items():
        if section not in merged:
            raise ConfigError(f"{where}: unknown section [{section}]; expected one of {sorted(merged)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for key, value in values.items():
            if key not in merged[section]:
                raise ConfigError(f"{where}: unknown key {key!r} in [{section}]; expected one of {sorted(merged[section])}")
            default = merged[section][key]
            if isinstance(default, list) and isinstance(value, str):
                value = [value]
            wrong_type = not isinstance(value, type(default)) and not (isinstance(default, float) and isinstance(value, int))
            # TOML's true is a Python int too: a boolean is never taken as a number (nor a number as a boolean)
            if wrong_type or (isinstance(value, bool) and not isinstance(default, bool)):
                found = _toml_value(value) if isinstance(value, (bool, int, float, str)) else repr(value)
                raise ConfigError(f"{where}: [{section}] {key}: expected {type(default).__name__}, found {found}")
            if isinstance(default, list) and not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: [{section}] {key}: expected a list of paths (strings), found {value!r}")
            merged[section][key] = value
    check_ranges(merged, where)
    return merged


# (section, key): (lowest, highest or None, what the number means)
RANGES: dict[tuple[str, str], tuple[int, int | None, str]] = {
    ("clips", "frames"): (1, 90, "sampled frames per clip (90 = all)"),
    ("clips", "short_side"): (0, None, "pixels (0 keeps the movie's size)"),
    ("clips", "keyframe_short_side"): (0, None, "pixels (0 keeps the movie's size)"),
    ("clips", "jpeg_quality"): (1, 100, "JPEG quality"),
    ("ingest", "workers"): (0, None, "parallel movies (0 = one per core)"),
    ("download", "workers"): (1, None, "parallel downloads"),
    ("labelstudio", "describe_project"): (0, None, "a Label Studio project id (0 = none yet)"),
    ("labelstudio", "verify_project"): (0, None, "a Label Studio project id (0 = none yet)"),
    ("annotation", "verifiers_per_expression"): (1, 9, "verifiers who must find each person"),
    ("annotation", "honeypot_share"): (0, 0.5, "share of honeypot tasks in each verify push"),
    ("annotation", "honeypot_min_answers"): (1, None, "honeypot answers before a verifier is judged"),
    ("annotation", "honeypot_min_accuracy"): (0, 1, "honeypot accuracy a verifier needs"),
    ("seeds", "splits"): (0, None, "a seed"),
    ("seeds", "rephrase"): (0, None, "a seed"),
    ("seeds", "corrupt"): (0, None, "a seed"),
}


def check_ranges(config: dict, where: str) -> None:
    """Raise :class:`ConfigError` naming key, range and value for the first number out of its range.

    >>> check_ranges({"clips": {"frames": 0}}, "refava.toml")
    Traceback (most recent call last):
    ...
    refava.errors.ConfigError: refava.toml: [clips] frames = 0 is out of range: expected 1..90 (sampled frames per clip (90 = all))
    """
    for (section, key), (low, high, meaning) in RANGES.items():
        value = config.get(section, {}).get(key)
        if value is None:
            continue
        if value < low or (high is not None and value > high):
            wanted = f"{low}..{high}" if high is not None else f">= {low}"
            raise ConfigError(f"{where}: [{section}] {key} = {value!r} is out of range: expected {wanted} ({meaning})")
    for (section, key), allowed in CHOICES.items():
        value = config.get(section, {}).get(key)
        if value is not None and value not in allowed:
            raise ConfigError(f"{where}: [{section}] {key} = {value!r}: expected one of {', '.join(allowed)}")


CHOICES: dict[tuple[str, str], tuple[str, ...]] = {("annotation", "consensus"): ("unanimous", "majority")}


@dataclass
class Workspace:
    """A workspace root and its parsed refava.toml."""

    root: Path
    config: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, root: str | os.PathLike) -> "Workspace":
        root = Path(root).resolve()
        path = root / CONFIG_NAME
        if not path.exists():
            raise WorkspaceNotFoundError(f"{path} not found: run `refava init {root}` first")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        for section, values in list(data.items()):        # [labelstudio.verify] arrives nested in [labelstudio]
            for key, value in list(values.items()) if isinstance(values, dict) else []:
                if isinstance(value, dict):
                    data[f"{section}.{key}"] = values.pop(key)
        return cls(root, _merge(DEFAULT_CONFIG, data, str(path)))

    def path(self, relative: str | os.PathLike) -> Path:
        """A path from refava.toml, relative to the workspace root (absolute paths are kept)."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.root / p

    def paths(self, section: str, key: str) -> list[Path]:
        value = self.config[section][key]
        values = value if isinstance(value, list) else ([value] if value else [])
        return [self.path(v) for v in values]

    def optional_path(self, section: str, key: str) -> Path | None:
        value = self.config[section][key]
        return self.path(value) if value else None

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def table(self, name: str) -> Path:
        return self.tables_dir / f"{name}.parquet"

    def protected_paths(self) -> list[Path]:
        """What an output folder must never be or hold: the workspace's own files and folders and its inputs."""
        own = [self.root / n for n in (CONFIG_NAME, "tables", "frames", "cache", "locks", "labelstudio", "refava",
                                       "reports")]
        inputs = [self.path(self.config["ava"]["movies_dir"])] if self.config["ava"].get("movies_dir") else []
        inputs += [p for key in ("annotations", "excluded") for p in self.paths("ava", key)]
        return own + inputs

    @contextmanager
    def lock(self, stage: str):
        """Hold the write lock of ``stage`` while the block runs: a second writer of the same stage is refused
        at once, naming the holder.  The lock is an OS lock (``flock``) on ``locks/<stage>.lock``: it goes with
        the process that holds it, so a killed run's lock is simply taken over.  Readers take no lock."""
        import fcntl
        import socket
        import sys

        from .io import take_lock

        folder = self.root / "locks"
        path = folder / f"{stage.replace(' ', '-')}.lock"
        try:
            folder.mkdir(exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ReadOnlyWorkspaceError(f"{path}: cannot write the workspace ({exc.strerror}); `refava {stage}` "
                                         f"writes under {self.root}: make it writable, or copy the workspace to a "
                                         f"writable place") from None
        take_lock(fd, lambda holder: f"`refava {stage}` is already running in {self.root} ({holder}); wait for it "
                                     f"to end, or stop it (a killed run's lock is taken over at once)")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv[1:])[:120]}\n".encode(), 0)
            yield path
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def save(self) -> Path:
        path = self.root / CONFIG_NAME
        write_text_atomic(path, dump_config(self.config))
        return path


def find_workspace(explicit: str | os.PathLike | None = None, start: str | os.PathLike | None = None) -> Workspace:
    """Find the workspace: ``explicit``, then $REFAVA_WORKSPACE, then ``start`` (cwd) and its parents."""
    if explicit:
        return Workspace.load(explicit)
    if os.environ.get(ENV_VAR):
        return Workspace.load(os.environ[ENV_VAR])
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).exists():
            return Workspace.load(folder)
    raise WorkspaceNotFoundError(f"no {CONFIG_NAME} in {here} or any folder above it: run `refava init DIR`, "
                                 f"cd into a workspace, or pass -w DIR / set {ENV_VAR}")


def init_workspace(root: str | os.PathLike, *, overrides: dict[str, dict[str, Any]] | None = None,
                   exist_ok: bool = False) -> Workspace:
    """Create ``root``/refava.toml with defaults plus ``overrides``; refuse to overwrite unless ``exist_ok``."""
    root = Path(root).resolve()
    path = root / CONFIG_NAME
    if path.exists() and not exist_ok:
        raise ConfigError(f"{path} exists already: edit it, or pass --force to rewrite it")
    root.mkdir(parents=True, exist_ok=True)
    ws = Workspace(root, _merge(DEFAULT_CONFIG, overrides or {}, "refava init"))
    ws.save()
    return ws
