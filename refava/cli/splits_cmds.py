"""``refava build-splits``."""
from __future__ import annotations


import click

from ..splits import accepted_instances
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
    from ..ava import default_label_map
    from ..fsutil import write_json_atomic, write_text_atomic
    from ..splits import (SplitError, build_splits, check_splits, parse_fractions, preset_fractions,
                          report_markdown, split_rows)
    from ..tables import read_table, write_table

    ws = load_workspace(ctx, lock="build-splits")
    instances, source = accepted_instances(ws)
    out = ws.table("splits")
    if check_only:
        rows = read_table("splits", out).to_pylist()
        check_splits(rows, instances)
        click.echo(f"splits OK: {len(rows)} instances, {len({r['video_id'] for r in rows})} movies, "
                   f"no movie or clip in two splits ({out})")
        return
    target = parse_fractions(fractions) if fractions else preset_fractions(preset)
    pin_map = {}
    for pin in pins:
        movie, eq, split = pin.partition("=")
        if not eq:
            raise SplitError(f"--pin {pin!r}: expected VIDEO=SPLIT")
        pin_map[movie] = split
    previous = {}
    if out.exists() and not fresh:
        previous = {r["video_id"]: r["split"] for r in read_table("splits", out).to_pylist()}
        previous = {m: s for m, s in previous.items() if s in target}
    seed = ws.config["seeds"]["splits"] if seed is None else seed
    result = build_splits(instances, target, seed=seed, pins=pin_map, previous=previous)
    rows = split_rows(result, instances)
    check_splits(rows, instances)
    from ..fsutil import sha256_file

    write_table("splits", rows, out, provenance={"stage": "build-splits", "params": {
        "fractions": target, "seed": seed, "pins": pin_map, "kept_from_previous": len(previous)},
        "inputs": {name: sha256_file(ws.table(name)) for name in ("instances", "annotation_status")
                   if ws.table(name).exists()}})
    report = result.report(instances)
    labels = {k: v.name for k, v in default_label_map().items()}
    write_json_atomic(ws.reports_dir / "splits.json", report)
    write_text_atomic(ws.reports_dir / "splits.md", report_markdown(report, labels))
    for name, s in report["splits"].items():
        click.echo(f"  {name:<6} {s['instances']:>6} instances ({s['share']:.3f}, target {s['target']:.3f}), "
                   f"{s['clips']} clips, {s['movies']} movies")
    click.echo(f"over {len(instances)} {source}")
    click.echo(f"largest class share deviation {report['max_abs_class_deviation']:.3f}; "
               f"{len(previous)} movies kept from earlier splits")
    click.echo(f"splits: {out}\nreport: {ws.reports_dir / 'splits.md'}")


@cli.command("stats")
@click.option("--gallery", default=8, show_default=True, help="Keyframes in the gallery figure.")
@click.pass_context
def stats_cmd(ctx, gallery):
    """Figures of the build as PNG files (reports/stats/) and one self-contained page (reports/stats.html):
    instances per split, people per clip, actions per split, expression length, frequent words per category and
    their co-occurrence, and a gallery of keyframes with box and expression."""
    from ..stats import make_stats

    make_stats(load_workspace(ctx, lock="stats"), gallery=gallery, log=click.echo)
