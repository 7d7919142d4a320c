"""``refava export`` and ``refava browse``: the packaged dataset for other tools and for people."""
from __future__ import annotations

from pathlib import Path

import click

from .root import cli, load_workspace


def _dataset_folder(ctx, dataset: str | None):
    """The packaged dataset folder (--dataset, else the workspace's refava/) and the workspace, if any."""
    if dataset:
        return Path(dataset), None
    ws = load_workspace(ctx)
    return ws.root / "refava", ws


@cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["ava", "coco", "webdataset", "fiftyone"]), required=True,
              help="ava: AVA csv + label map pbtxt + SlowFast frame lists (+ an expressions side table); coco: "
                   "COCO-style JSON per split with a RefCOCO-style refs list; webdataset: tar shards (row JSON, "
                   "keyframe and frames as JPEG) for webdataset and datasets.load_dataset('webdataset'); fiftyone: "
                   "a folder FiftyOne imports (tools/fiftyone.sh open DIR).")
@click.option("--dataset", type=click.Path(file_okay=False, exists=True),
              help="Packaged dataset folder (default: the workspace's refava/; with it no workspace is needed).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output folder (default: exports/<format> in the workspace, or beside --dataset).")
@click.option("--split", help="Only this split (train, val/validation, test; default: all).")
@click.option("--no-images", is_flag=True, help="Annotations only: no keyframe / frame JPEG files.")
@click.option("--shard-size", default="256MB", show_default=True,
              help="webdataset: the most a tar shard holds (B, KB, MB, GB; a shard holds at least one row).")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="webdataset: shards written at once.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def export_cmd(ctx, fmt, dataset, out, split, no_images, shard_size, workers, no_progress):
    """Export the packaged dataset for action-detection and grounding code.

    \b
    Examples:
      refava export --format ava                 # -> exports/ava: annotations/, frame_lists/, frames/, keyframes/
      refava export --format coco --split test   # -> exports/coco/refava_test.json + images/
      refava export --format coco --dataset /data/refava --out /data/refava-coco
      refava export --format webdataset --shard-size 1GB --workers 8   # -> exports/webdataset/<split>/*.tar
      refava export --format fiftyone && tools/fiftyone.sh open exports/fiftyone   # the FiftyOne App
    The folder is written beside the target and renamed into place; refava-export.json lists what is there (for
    webdataset: each shard's rows, bytes and sha256). A killed webdataset export resumes from its finished shards.
    """
    from ..export import export_dataset

    folder, ws = _dataset_folder(ctx, dataset)
    target = Path(out) if out else (ws.root / "exports" / fmt if ws else folder.parent / f"{folder.name}-{fmt}")
    summary = export_dataset(folder, target, fmt, split=split, images=not no_images, log=click.echo,
                             protected=ws.protected_paths() if ws else (), shard_bytes=_size(shard_size),
                             workers=workers, progress=not no_progress)
    rows = ", ".join(f"{s} {n:,}" for s, n in summary.rows.items())
    click.echo(f"exported {rows} rows as {fmt}, {summary.images:,} image file(s)")
    for name in summary.files:
        click.echo(f"  {summary.out / name}")
    for note in summary.notes:
        click.echo(note)
    click.echo(f"export: {summary.out}")


def _size(text: str) -> int:
    """'256MB' -> bytes (decimal units as file managers show them; a bare number is bytes)."""
    units = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if match is None or match.group(2).upper() not in units or float(match.group(1)) <= 0:
        raise click.BadParameter(f"expected a size such as 256MB or 1GB, found {text!r}", param_hint="--shard-size")
    return int(float(match.group(1)) * units[match.group(2).upper()])


@cli.command("browse")
@click.option("--out", type=click.Path(file_okay=False), help="Site folder (default: reports/browse).")
@click.option("--serve", is_flag=True, help="Then serve it on 127.0.0.1 (until Ctrl-C).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port for --serve (0: any free port).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def browse_cmd(ctx, out, serve, port, no_progress):
    """Write a static site to look through every instance: keyframe with its box, expression, rephrasings,
    annotation status and reasons, actions, corrupted versions side by side; filters by split, action, status,
    movie and text (kept in the URL).

    \b
    Examples:
      refava browse                 # -> reports/browse/index.html (open it from disk)
      refava browse --serve         # and serve it at http://127.0.0.1:8765/
    """
    from ..browse import build_site
    from ..browse import serve as serve_folder

    ws = load_workspace(ctx)
    summary = build_site(ws, out, log=click.echo, progress=not no_progress)
    missing = f"; {summary.missing_keyframes} without a stored keyframe (see `refava status`)" \
        if summary.missing_keyframes else ""
    click.echo(f"browser: {summary.rows:,} instances, {summary.images:,} keyframes, {summary.corrupted_images:,} "
               f"corrupted keyframes{missing}")
    for line in summary.damaged_stores:
        click.echo(f"  skipped a damaged frame store (its keyframes are not shown): {line}", err=True)
    click.echo(f"open: {summary.out / 'index.html'}")
    if serve:
        serve_folder(summary.out, port, log=click.echo)
