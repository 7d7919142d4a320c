"""``refava corrupt``."""
from __future__ import annotations

import click

from .root import cli, load_workspace
from .options import check_engine_options, engine_options

TYPES = ("gaussian_noise", "shot_noise", "fog", "rain", "brightness", "contrast", "saturate", "motion_blur",
         "h264_crf", "h264_abr", "bit_error", "frame_rate", "freeze", "jumble", "box_jumble", "reverse")


@cli.command("corrupt")
@click.option("--type", "types", multiple=True, type=click.Choice(TYPES + ("all",)),
              help="Corruption(s) to apply (repeatable; default the paper's four: gaussian_noise, shot_noise, fog, "
                   "rain; 'all' for every type).")
@click.option("--severity", "severities", multiple=True, type=click.IntRange(1, 5),
              help="ImageNet-C severity 1..5 (repeatable; default 3 unless --preset).")
@click.option("--preset", type=click.Choice(["paper", "authors-code", "ravar"]),
              help="Instead of --severity, for the paper's four types. paper: what the paper's appendix describes "
                   "(Gaussian sigma 0.2 on the [0, 1] scale, shot c = 5, rain as ellipse drops at severity 2, fog at "
                   "severity 3 over the whole frame; all scaled to the frame size). authors-code: literally the "
                   "authors' loader (Gaussian noise of 0.2 grey levels, shot c = 5, rain streaks all with slant -1, "
                   "30 px long whatever the frame size, their uint8 arithmetic; fog on the centre 224x224 crop, "
                   "which becomes the frame). They differ in Gaussian noise (51 grey levels against 0.2), rain and "
                   "fog; ravar is the old name of paper.")
@click.option("--split", "splits", multiple=True, help="Split(s) whose clips are corrupted (repeatable; 'all' for "
                                                       "every split).  [default: test]")
@click.option("--rain-style", type=click.Choice(["streaks", "drops"]), default="streaks", show_default=True,
              help="Rain as the reference's line streaks, or as the paper appendix's ellipse drops.")
@click.option("--seed", type=int, help="Seed (default: [seeds] corrupt in refava.toml).")
@click.option("--force", is_flag=True, help="Redo movies whose corrupted frames are already up to date.")
@click.option("--gallery", is_flag=True, help="Only write reports/corrupt_gallery.png: a few keyframes, clean and "
                                              "under every type x severity, and fog at 224x224 vs 1280x720.")
@click.option("--gallery-clips", default=3, show_default=True, help="Keyframes in the gallery.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True,
              help="With --engine local: (setting, movie) tasks in parallel processes (0 = one per core).")
@engine_options
@click.pass_context
def corrupt_cmd(ctx, types, severities, preset, splits, rain_style, seed, force, gallery, gallery_clips, no_progress,
                workers, engine, ray_address, shard, merge):
    """Corrupt the clips of a split: the RAVAR robustness study's rain, fog, shot and Gaussian noise; the authors'
    brightness, contrast, saturate and motion blur; H.264 quality, bitrate and bit errors; frame rate, freeze,
    jumble, box jumble and reversal.

    \b
    Writes frames/corrupted/<setting>/<video_id>.parquet (e.g. fog_s3, rain_paper), stored like the clean frames,
    and tables/corruptions.parquet: one row per clip and setting with its parameters, seed and the hashes of the
    clean and corrupted clip.  Each clip's randomness comes from (seed, clip id, setting), so any subset, order or
    rerun gives the same bytes.  Interrupted runs resume per movie; up-to-date movies are not redone.  The codec
    types keep each clip's CRF-23 encode in cache/h264/ (h264_crf 1, h264_abr and bit_error all start from it:
    encoded once per clip; delete the folder any time, the outputs stay the same).
    \b
    Examples:
      refava corrupt --type fog --severity 3
      refava corrupt --preset paper                  # the paper's four as its appendix describes them
      refava corrupt --preset authors-code           # ... and as the authors' code literally does
      refava corrupt --type rain --severity 1 --severity 5 --split val --split test
      refava corrupt --gallery                       # reports/corrupt_gallery.png
      refava corrupt --type all --engine ray --ray-address auto   # one Ray task per (setting, movie)
      refava corrupt --type all --shard 0/8 ... then --merge      # a job array
    """
    from ..corrupt.stage import run
    from ..engine import Engine

    shard_spec = check_engine_options(engine, ray_address, shard, merge)
    engine_spec = Engine(engine, workers, ray_address)
    ws = load_workspace(ctx, "corrupt", shard=shard_spec)
    if gallery:
        seed = int(ws.config["seeds"]["corrupt"] if seed is None else seed)
        _gallery(ws, splits or ("test",), gallery_clips, seed, rain_style)
        return
    paper = TYPES[:4]                            # the paper's four; the authors' presets exist for these only
    kinds = (paper if not types or ("all" in types and preset) else TYPES if "all" in types
             else tuple(dict.fromkeys(types)))
    if preset and severities:
        raise click.UsageError("--preset and --severity exclude each other: the preset fixes the severities")
    click.echo(run(ws, types=kinds, severities=severities, preset=preset, splits=splits or ("test",),
                   style=rain_style, seed=seed, force=force, progress=not no_progress, engine=engine_spec,
                   shard=shard_spec, merge=merge, log=click.echo).text())


def _gallery(ws, splits, count, seed, style):
    from ..corrupt.gallery import write_gallery
    from ..corrupt.stage import _decode, selected_clips
    from ..framestore import clean_path, read_keyframes

    keyframes = []
    for video_id, clips in selected_clips(ws, splits).items():
        path = clean_path(ws.root, video_id)
        if not path.exists():
            continue
        rows = list(read_keyframes(path, set(clips)).items())
        step = max(1, len(rows) // count)                 # spread over the movie rather than its first seconds
        for clip_id, jpeg in rows[::step][:count - len(keyframes)]:
            keyframes.append((clip_id, _decode(jpeg)))
        if len(keyframes) >= count:
            break
    if not keyframes:
        raise click.ClickException(f"no keyframes found for split(s) {', '.join(splits)}: run `refava ingest` and "
                                   f"`refava build-splits` first")
    out = write_gallery(ws.reports_dir / "corrupt_gallery.png", keyframes, seed=seed, style=style)
    click.echo(f"gallery of {len(keyframes)} keyframe(s) x {len(TYPES)} types x (5 severities + paper preset): {out}")
