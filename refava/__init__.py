"""refava: build, check and ship RefAVA (referring expressions for the people in AVA movies).

The public namespace is flat; heavy modules (torch, datasets, openai, label_studio_sdk) are imported only by the
functions that need them, so ``import refava`` and ``refava --help`` stay fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    # records and tables
    "Movie": "records", "Instance": "records", "Clip": "records",
    "Movies": "records", "Instances": "records", "Clips": "records",
    "clip_id_of": "records", "instance_id_of": "records", "parse_instance_id": "records",
    "read_table": "tables", "write_table": "tables", "read_provenance": "tables",
    "arrow_schema": "schemas", "json_schema": "schemas", "validate_rows": "schemas",
    # errors
    "RefavaError": "errors", "ValidationError": "errors", "SchemaError": "errors", "AnnotationFormatError": "errors",
    "MissingMediaError": "errors", "VideoDecodeError": "errors", "DownloadError": "errors", "UnsafeIdError": "errors",
    "ConfigError": "errors", "WorkspaceNotFoundError": "errors", "StageError": "errors",
    # AVA readers
    "load_ava_csv": "ava", "load_ava_results_csv": "ava", "load_label_map": "ava", "load_excluded_timestamps": "ava",
    "load_file_list": "ava", "load_proposals": "ava", "group_instances": "ava", "ActionClass": "ava",
    # video
    "probe": "video", "iter_frames": "video", "VideoInfo": "video", "encode_jpeg": "video", "VideoWriter": "video",
    # stages
    "ingest": "ingest", "download": "download", "make_sample_corpus": "sample_corpus",
    "Workspace": "workspace", "find_workspace": "workspace", "init_workspace": "workspace",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refava' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
