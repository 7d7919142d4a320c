"""``refava sample-corpus``, ``refava download`` and ``refava ingest``."""
from __future__ import annotations

from pathlib import Path

import click

from .options import check_engine_options, engine_options
from .root import cli, load_workspace


@cli.command("sample-corpus")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seconds", default=14, show_default=True, help="Length of each sample movie.")
@click.option("--seed", default=0, show_default=True)
def sample_corpus_cmd(out, seconds, seed):
    """Write a small AVA-format corpus into OUT: 8 short movies (mp4/mkv/webm), their ground-truth csv, label
    map, excluded timestamps, file list, proposals, checksums, and a two-annotator Label Studio export."""
    from ..io import _marked_files, output_folder
    from ..sample_corpus import make_sample_corpus

    def owned(folder: Path):
        """What sample-corpus wrote there: its record, or (an older refava's) movies/ and annotations/ alone."""
        marked = _marked_files(folder)
        if marked is not None or {p.name for p in folder.iterdir()} - {"movies", "annotations", ".complete"}:
            return marked
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {".complete"}

    with output_folder(out, owned=owned, what="sample corpus") as tmp:     # built beside OUT, swapped in
        final = str(Path(out).resolve())
        summary = make_sample_corpus(tmp, seconds=seconds, seed=seed,
                                     log=lambda line: click.echo(str(line).replace(str(tmp), final)))
    summary["out"] = str(Path(out).resolve())
    click.echo(f"next: refava init ws --from-sample {out}")
    return summary


@cli.command("download")
@click.option("--file-list", type=click.Path(exists=True, dir_okay=False),
              help="Movie file names, one per line (default: [ava] file_list of refava.toml).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Destination (default: [ava] movies_dir).")
@click.option("--base-url", help="Server base; files are fetched from BASE/SUBSET/NAME (default: the CVDF AVA mirror).")
@click.option("--subset", help="trainval or test (default: [download] subset).")
@click.option("--checksums", type=click.Path(exists=True, dir_okay=False), help="md5sum/sha256sum-style list to verify.")
@click.option("--workers", type=click.IntRange(min=1), help="Parallel downloads.")
@click.option("--retries", default=3, show_default=True, help="Retries per file (each resumes where the last stopped).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds without data before a retry.")
@click.option("--only", multiple=True, help="Download only these file names (repeatable).")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def download_cmd(ctx, file_list, out_dir, base_url, subset, checksums, workers, retries, timeout, only, no_progress):
    """Download AVA movies: parallel, resumable (HTTP Range), atomic (.part then rename), verified by
    Content-Length and, when given, checksums.  Works without a workspace when --file-list and --out are given."""
    from ..ava import load_file_list
    from ..download import download, load_checksums
    from ..errors import ConfigError

    ws = None
    if not (file_list and out_dir and base_url):
        ws = load_workspace(ctx)
    cfg = ws.config if ws else {"download": {}, "ava": {}}
    file_list = file_list or (ws.optional_path("ava", "file_list") if ws else None)
    if not file_list:
        raise ConfigError("no file list: pass --file-list or set [ava] file_list in refava.toml")
    names = list(load_file_list(file_list).values())
    if not names:
        raise ConfigError(f"{file_list}: expected movie file names, one a line; found none (nothing to download)")
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ConfigError(f"--only names not in {file_list}: {unknown}")
        names = [n for n in names if n in only]
    out = Path(out_dir) if out_dir else ws.path(cfg["ava"]["movies_dir"])
    checksum_path = checksums or (ws.optional_path("download", "checksums") if ws else None)
    result = download(names, out, base_url=base_url or cfg["download"].get("base_url"),
                      subset=subset if subset is not None else cfg["download"].get("subset", "trainval"),
                      checksums=load_checksums(checksum_path) if checksum_path else None,
                      workers=workers or cfg["download"].get("workers", 4), retries=retries, timeout=timeout,
                      progress=not no_progress, log=click.echo)
    if result.failed:
        raise click.ClickException(f"{len(result.failed)} of {len(names)} downloads failed; rerun to resume them")


def _frames_option(value: str) -> int:
    if value == "all":
        return 90
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"expected a number of frames 1..90 or 'all', found {value!r}") from None


@cli.command("ingest")
@click.option("--movies-dir", type=click.Path(file_okay=False), help="Override [ava] movies_dir.")
@click.option("--annotations", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Override [ava] annotations.")
@click.option("--label-map", type=click.Path(exists=True, dir_okay=False), help="Override [ava] label_map.")
@click.option("--excluded", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Override [ava] excluded.")
@click.option("--frames", help="Sampled frames per clip, or 'all' for the 90 (default: [clips] frames).")
@click.option("--short-side", type=int, help="Short side of sampled frames in pixels (0 keeps the size).")
@click.option("--keyframe-short-side", type=int, help="Short side of the stored keyframe (0 keeps the size).")
@click.option("--jpeg-quality", type=click.IntRange(1, 100))
@click.option("--workers", type=click.IntRange(min=0), help="Movies decoded in parallel (0 = one per core).")
@click.option("--strict", is_flag=True, help="Exit non-zero if anything was skipped (the good part is still written).")
@click.option("--force", is_flag=True, help="Redo every movie, even finished ones.")
@click.option("--allow-empty", is_flag=True, help="Let annotation files without one usable row replace non-empty "
              "tables (refused by default).")
@click.option("--no-progress", is_flag=True)
@engine_options
@click.pass_context
def ingest_cmd(ctx, movies_dir, annotations, label_map, excluded, frames, short_side, keyframe_short_side,
               jpeg_quality, workers, strict, force, allow_empty, no_progress, engine, ray_address, shard, merge):
    """Cut AVA clips: movies + ground-truth csv -> tables/{movies,instances,clips}.parquet and
    frames/clean/<video_id>.parquet (keyframe + sampled frames per clip), with reports/ingest.json.

    \b
    A clip is [t - 1.5 s, t + 1.5 s) around keyframe t; each movie is decoded once, in order, and the
    frame nearest each target time is kept.  Finished movies are skipped on a rerun (--force redoes them).
    Missing or broken movies, bad rows, excluded keyframes: counted, reported, skipped.

    \b
    On several machines (the workspace on a shared filesystem; the bytes are the same as a local run):
      refava ingest --engine ray --ray-address auto          # a Ray cluster, one task per movie
      refava ingest --shard 3/16                             # one task of a job array; then:
      refava ingest --merge                                  # writes the tables once all 16 are done
    """
    from ..engine import Engine
    from ..ingest.stage import run

    shard_spec = check_engine_options(engine, ray_address, shard, merge)
    ws = load_workspace(ctx, "ingest", shard=shard_spec)
    workers = workers if workers is not None else ws.config["ingest"]["workers"]
    changes = {k: v for k, v in {"frames": _frames_option(frames) if frames else None, "short_side": short_side,
                                 "keyframe_short_side": keyframe_short_side, "jpeg_quality": jpeg_quality}.items()
               if v is not None}
    summary = run(ws, movies_dir=movies_dir, annotations=annotations, label_map=label_map, excluded=excluded,
                  changes=changes, workers=workers, strict=strict, force=force, progress=not no_progress,
                  allow_empty=allow_empty, engine=Engine(engine, workers, ray_address), shard=shard_spec,
                  merge=merge, log=click.echo)
    if summary.lines:
        click.echo(summary.text())
