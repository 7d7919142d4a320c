"""The ``refava`` command line: one click root group, one module per command group, argument plumbing only.

Heavy libraries are imported inside command bodies, so ``refava --help`` is instant.
"""
from __future__ import annotations

import sys

from .root import cli, load_workspace, os_error_message  # noqa: F401  (the root group; commands register on it)


def _register() -> None:
    # the modules add their commands to `cli`
    from . import (annotate_cmds, corrupt_cmds, data, interop_cmds, package_cmds, rephrase_cmds,  # noqa: F401
                   splits_cmds, train_cmds, workspace_cmds)


_register()


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="refava")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
