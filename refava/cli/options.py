"""Options shared by several commands."""
from __future__ import annotations

import click


def engine_options(fn):
    """--engine / --ray-address / --shard / --merge for the stages whose work splits by movie."""
    fn = click.option("--merge", is_flag=True, help="After a job array: check that every shard's movies are done "
                      "(refused otherwise, naming them), then write the tables; no movie is redone.")(fn)
    fn = click.option("--shard", metavar="I/N", help="Do only shard I of N of the movies (0-based; for job "
                      "arrays, e.g. Slurm: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); writes no "
                      "table; rerun a killed shard to resume it.")(fn)
    fn = click.option("--ray-address", metavar="ADDRESS", help="With --engine ray: auto (the cluster of "
                      "`ray start`), HOST:PORT, ray://HOST:PORT, or local (a private cluster on this machine; "
                      "the default).")(fn)
    fn = click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                      help="local: a process pool on this machine; ray: one Ray task per movie, retried when "
                           "its worker dies (pip install 'refava[ray]'). The bytes are the same.")(fn)
    return fn


def check_engine_options(engine: str, ray_address: str | None, shard: str | None, merge: bool):
    """The options of :func:`engine_options` checked together; the shard parsed (None without --shard)."""
    from ..engine import parse_shard

    if shard and merge:
        raise click.UsageError("--shard and --merge go in separate runs: each shard, then one merge")
    if ray_address and engine != "ray":
        raise click.UsageError("--ray-address goes with --engine ray")
    return parse_shard(shard)
