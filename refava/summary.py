"""What a stage's ``run`` returns: the lines the CLI prints and where the outputs went."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Summary:
    """A stage's outcome: ``lines`` to show (the CLI prints them, nothing else), ``outputs`` (label -> path)."""

    stage: str
    lines: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)

    def text(self) -> str:
        return "\n".join([*self.lines, *(f"{label}: {path}" for label, path in self.outputs.items())])


@dataclass(frozen=True)
class StageState:
    """What `refava status` says of a stage: done, stale (inputs or parameters changed), partial, missing, failed."""

    stage: str
    state: str
    detail: str
