"""``refava build-splits``."""
from __future__ import annotations


import click

from .root import cli, load_workspace


@cli.command("build-splits")
@click.option("--fractions", help="Target instance fractions, e.g. 'train=0.7,val=0.2,test=0.1' "
                                  "(default: the RefAVA preset 22,658 / 10,916 / 3,056).")
@click.option("--preset", default="refava", show_default=True, help="Named fractions when --fractions is not given.")
@click.option("--seed", type=int, help="Seed for tie-breaking (default: [seeds] splits).")
@click.option("--pin", "pins", multiple=True, metavar="VIDEO=SPLIT", help="Force a movie into a split (repeatable).")
@click.option("--fresh", is_flag=True, help="Ignore the existing splits: place every movie anew (default: movies "
                                            "already in tables/splits.parquet stay where they are).")
@click.option("--check", "check_only", is_flag=True, help="Only verify tables/splits.parquet against the instances.")
@click.pass_context
def build_splits_cmd(ctx, fractions, preset, seed, pins, fresh, check_only):
    """Assign whole movies to train/val/test, balancing every action class across splits.

    \b
    Writes tables/splits.parquet (one row per instance) and reports/splits.{json,md}: instances, clips and
    movies per split, and per class its count and share per split with the largest deviation from target.
    Verified on write and by --check: no movie or clip in two splits, every instance in exactly one split.
    Uses the accepted instances when the annotation stage has run, else every ingested instance.
    """
    from ..splits import check, run

    ws = load_workspace(ctx, "build-splits")
    summary = check(ws) if check_only else run(ws, fractions=fractions, preset=preset, seed=seed, pins=pins,
                                                   fresh=fresh)
    click.echo(summary.text())


@cli.command("stats")
@click.option("--gallery", default=8, show_default=True, help="Keyframes in the gallery figure.")
@click.pass_context
def stats_cmd(ctx, gallery):
    """Figures of the build as PNG files (reports/stats/) and one self-contained page (reports/stats.html):
    instances per split, people per clip, actions per split, expression length, frequent words per category and
    their co-occurrence, and a gallery of keyframes with box and expression."""
    from ..stats import run

    click.echo(run(load_workspace(ctx, "stats"), gallery=gallery).text())
