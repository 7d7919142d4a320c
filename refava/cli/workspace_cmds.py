"""``refava init`` and ``refava status``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .root import cli, load_workspace


def _rel(path: Path, root: Path) -> str:
    try:
        path = path.resolve()
    except (OSError, RuntimeError):      # a symlink loop: kept as given, ingest reports it
        path = path.absolute()
    try:
        return os.path.relpath(path, root.resolve())
    except ValueError:  # another drive on Windows
        return str(path)


@cli.command("init")
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--from-sample", "sample", type=click.Path(exists=True, file_okay=False),
              help="Point the workspace at a corpus made by `refava sample-corpus` (movies/ and annotations/).")
@click.option("--movies-dir", type=click.Path(), help="Folder with the AVA movie files.")
@click.option("--annotations", multiple=True, type=click.Path(), help="AVA ground-truth csv (repeatable).")
@click.option("--label-map", type=click.Path(), help="AVA label map (.pbtxt or .csv); default: the 80 AVA actions.")
@click.option("--excluded", multiple=True, type=click.Path(), help="Excluded-timestamps csv (repeatable).")
@click.option("--file-list", type=click.Path(), help="Movie file-name list for `refava download`.")
@click.option("--force", is_flag=True, help="Rewrite an existing refava.toml.")
def init_cmd(directory, sample, movies_dir, annotations, label_map, excluded, file_list, force):
    """Create a workspace: write DIRECTORY/refava.toml (paths in it are relative to DIRECTORY).

    \b
    Example:
      refava sample-corpus sample
      refava init ws --from-sample sample
    """
    from ..workspace import init_workspace

    root = Path(directory).resolve()
    ava: dict = {}
    if sample:
        s = Path(sample)
        ann = s / "annotations"
        ava = {"movies_dir": _rel(s / "movies", root),
               "annotations": [_rel(ann / "ava_sample_v2.2.csv", root)],
               "label_map": _rel(ann / "ava_action_list_v2.2.pbtxt", root),
               "excluded": [_rel(ann / "ava_excluded_timestamps_sample.csv", root)],
               "file_list": _rel(ann / "ava_file_names_sample.txt", root),
               "proposals": _rel(ann / "ava_dense_proposals_sample.pkl", root)}
    if movies_dir:
        ava["movies_dir"] = _rel(Path(movies_dir), root)
    if annotations:
        ava["annotations"] = [_rel(Path(a), root) for a in annotations]
    if label_map:
        ava["label_map"] = _rel(Path(label_map), root)
    if excluded:
        ava["excluded"] = [_rel(Path(e), root) for e in excluded]
    if file_list:
        ava["file_list"] = _rel(Path(file_list), root)
    missing = [f"--{opt} {given}" for opt, values in (("annotations", annotations), ("label-map", [label_map]),
                                                      ("excluded", excluded), ("file-list", [file_list]))
               for given in values if given and not Path(given).is_file()]
    if missing:
        raise click.UsageError("expected existing files, found nothing at: " + ", ".join(missing) +
                               f" (relative paths are taken from the current folder, {Path.cwd()})")
    ws = init_workspace(root, overrides={"ava": ava} if ava else None, exist_ok=force)
    click.echo(f"workspace: {ws.root / 'refava.toml'}")
    click.echo("paths in it are relative to the workspace folder:")
    for key in ("movies_dir", "annotations", "label_map", "excluded"):
        for value in ws.paths("ava", key):
            note = "" if value.exists() else ("   (does not exist yet: `refava download` fills it)"
                                              if key == "movies_dir" else "   (missing)")
            try:
                where = value.resolve()
            except (OSError, RuntimeError) as exc:        # a symlink loop
                where, note = value, f"   (cannot be resolved: {exc})"
            click.echo(f"  {key:<12} {os.path.relpath(value, ws.root)} -> {where}{note}")
    click.echo(f"next: cd {ws.root} && refava ingest")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the states as JSON.")
@click.pass_context
def status_cmd(ctx, as_json):
    """Show each stage of the workspace: done, stale (inputs or parameters changed) or missing."""
    from ..stages import stage_states

    ws = load_workspace(ctx)
    states = stage_states(ws)
    if as_json:
        click.echo(json.dumps({"workspace": str(ws.root), "stages": [s.__dict__ for s in states]}, indent=2))
        return
    click.echo(f"workspace {ws.root}")
    for s in states:
        click.echo(f"  {s.stage:<14} {s.state:<8} {s.detail}")


@cli.command("verify")
@click.option("--no-decode", is_flag=True, help="Check checksums and tables only; do not decode every JPEG.")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def verify_cmd(ctx, no_decode, no_progress):
    """Check the workspace: every frame store against the checksums recorded when it was written (naming movie
    and clip of any damage), every JPEG decodes, and the tables agree with each other.  Each problem says what
    to rerun; exits non-zero when there is one."""
    from ..verify import verify_workspace

    ws = load_workspace(ctx)
    report = verify_workspace(ws, decode=not no_decode, progress=not no_progress)
    for finding in report.findings:
        click.echo(f"  {finding.line()}")
    checked = (f"{report.frame_stores} frame store(s), {report.clips_checked} clip(s)"
               f"{'' if no_decode else ', every JPEG decoded'}; tables: {', '.join(report.tables) or 'none'}")
    if not report.ok:
        raise click.ClickException(f"{len(report.findings)} problem(s) in {ws.root} ({checked})")
    click.echo(f"verify: OK: {checked}")
