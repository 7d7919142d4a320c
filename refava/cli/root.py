"""The root ``refava`` group and what every command shares: clean errors, the workspace and its recovery."""
from __future__ import annotations

import click

from .. import __version__
from ..errors import RefavaError


class RefavaGroup(click.Group):
    """A group whose commands turn :class:`RefavaError` into a clean one-line error and a non-zero exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RefavaError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            message = os_error_message(exc)
            if message is None:
                raise
            raise click.ClickException(message) from exc


def os_error_message(exc: OSError) -> str | None:
    """A one-line explanation of the OS errors a user can fix (read-only or full disk, no permission), or None."""
    import errno

    where = exc.filename or "the workspace"
    if exc.errno == errno.EROFS:
        return (f"ReadOnlyWorkspaceError: {where} is on a read-only file system: this command writes there. Nothing "
                f"was changed; run it on a writable copy of the workspace (reading commands such as `refava status` "
                f"work as they are)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"PermissionError: {where}: no permission to write; nothing was changed. Fix the permissions and rerun"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        from pathlib import Path

        from ..fsutil import disk_full

        return f"DiskFullError: {disk_full(Path(where))}"
    return None


@click.group(cls=RefavaGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-w", "--workspace", "workspace", type=click.Path(file_okay=False), default=None,
              help="Workspace folder (default: $REFAVA_WORKSPACE, else the folder holding refava.toml at or above "
                   "the current one).")
@click.version_option(__version__, prog_name="refava")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None) -> None:
    """refava: build, check and ship RefAVA, referring expressions for the people in AVA movies.

    \b
    A build lives in a workspace folder (refava.toml at its root), like a git repository:
      refava sample-corpus sample && refava init ws --from-sample sample && cd ws
      refava ingest            # movies + AVA csv -> tables/ and frames/clean/
      refava status            # which stages are done, stale or missing
    Every command finds the workspace from the current folder upwards, or takes -w DIR.
    """
    ctx.obj = {"workspace": workspace}


def load_workspace(ctx: click.Context, stage: str | None = None, *, shard=None):
    """The workspace of this command, after putting right what killed runs left in it (said on stderr).

    ``stage`` names the command that writes (its declaration in :mod:`refava.stages`): its lock is held until the
    command ends, and a second writer of the same lock is refused at once (readers pass no ``stage``).  A shard of
    a job array holds a lock of its own (``shard``), so the shards of one array run side by side."""
    from ..stages import declared

    lock = None
    if stage:
        lock = declared(stage).lock + (f" shard {shard.index}-of-{shard.count}" if shard else "")
    from ..workspace import find_workspace

    ws = find_workspace(ctx.obj.get("workspace") if ctx.obj else None)
    if lock:
        ctx.with_resource(ws.lock(lock))
    from ..stages import recover

    for line in recover(ws):
        click.echo(f"refava: {line}", err=True)
    return ws
