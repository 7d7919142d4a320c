"""One error hierarchy for refava.

Every error says what was expected, what was found, and what to do next.  Subclasses also inherit the matching
built-in exception so callers can catch either (``except FileNotFoundError`` catches ``MissingMediaError``).
"""
from __future__ import annotations


class RefavaError(Exception):
    """Base class of every error refava raises on purpose."""


class ConfigError(RefavaError, ValueError):
    """A refava.toml or a command-line option is wrong."""


class WorkspaceNotFoundError(RefavaError, FileNotFoundError):
    """No refava.toml in the current folder or above it."""


class ValidationError(RefavaError, ValueError):
    """A record or a table does not satisfy its schema or its invariants."""


class SchemaError(ValidationError):
    """A table does not match its JSON Schema / Arrow schema."""


class AnnotationFormatError(ValidationError):
    """An AVA csv, label map, exclusion list or proposals file cannot be parsed."""


class UnsafeIdError(ValidationError):
    """An id that becomes part of a path would escape its folder (absolute, '..', separators)."""


class MissingMediaError(RefavaError, FileNotFoundError):
    """A movie or frame file that a table refers to is not there."""


class VideoDecodeError(RefavaError, OSError):
    """A video could not be opened or decoded (unreadable, truncated, unsupported)."""


class DownloadError(RefavaError, OSError):
    """A download failed or its content did not verify."""


class StageError(RefavaError, RuntimeError):
    """A stage cannot run because an input stage is missing or failed."""


class StrictModeError(RefavaError, RuntimeError):
    """--strict was given and problems were found (the report lists them)."""


class LockedError(RefavaError, RuntimeError):
    """Another live refava process is writing the same stage of this workspace."""


class ReadOnlyWorkspaceError(RefavaError, PermissionError):
    """The workspace (or the folder a stage writes) cannot be written."""


class DiskFullError(RefavaError, OSError):
    """The disk filled up while a stage was writing; finished work is kept."""
