"""``refava package``."""
from __future__ import annotations

import click

from .root import cli, load_workspace


@cli.command("package")
@click.option("--out", type=click.Path(file_okay=False), help="Dataset folder (default: refava/ in the workspace, "
                                                               "so `load_dataset(\"refava\")` works from its root).")
@click.option("--verify", "verify_dir", type=click.Path(file_okay=False, exists=True),
              help="Only verify a packaged folder: shard checksums, row counts, every row against the schema, "
                   "every JPEG decoded.")
@click.option("--no-decode", is_flag=True, help="With --verify: check JPEG headers only, do not decode (faster).")
@click.option("--push-to-hub", "repo", metavar="REPO", help="Also upload the folder to this Hugging Face dataset "
                                                            "repository (token from HF_TOKEN or `hf auth login`).")
@click.option("--shard-size-mb", default=512, show_default=True, help="Parquet shard size.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--annotator-emails", is_flag=True, help="Name annotators by their Label Studio account emails (personal "
              "data; the card says so). Default: stable pseudonymous ids, salted with the workspace's secret.")
@click.pass_context
def package_cmd(ctx, out, verify_dir, no_decode, repo, shard_size_mb, no_progress, annotator_emails):
    """Package the workspace as a Hugging Face dataset folder that `datasets.load_dataset` reads offline.

    \b
    Configurations: default (train/validation/test with keyframe and sampled frames), annotations_only (no
    pixels), rephrased (validation/test with rephrasings, when `refava rephrase` has run) and one per corruption
    setting and split (e.g. test_fog_s3). Writes README.md (the dataset card), data/<config>/*.parquet and
    refava-manifest.json (checksums, row counts). The folder is rebuilt in a temporary folder and renamed into
    place; a folder that is neither empty nor a refava dataset is refused.
    \b
    Examples:
      refava package                          # -> ./refava ; python -c 'import datasets; datasets.load_dataset("refava")'
      refava package --out /data/refava-v1 --push-to-hub me/refava
      refava package --verify refava
    """
    from ..package import PackageError, verify_dataset

    if verify_dir:
        report = verify_dataset(verify_dir, decode=not no_decode)
        for problem in report.problems[:50]:
            click.echo(f"  {problem}", err=True)
        if report.problems:
            raise PackageError(f"{verify_dir}: {len(report.problems)} problem(s) in {report.shards} shard(s)")
        decoded = "" if no_decode else ", every JPEG decodes"
        click.echo(f"{verify_dir}: OK, {report.shards} shards, {report.rows} rows, checksums and rows match{decoded}")
        return
    from ..package.build import run

    summary = run(load_workspace(ctx, "package"), out=out, shard_bytes=shard_size_mb << 20, repo=repo,
                  progress=not no_progress, log=click.echo,
                  annotator_ids="emails" if annotator_emails else "pseudonyms")
    click.echo(summary.text())
