"""``refava annotate import | push | pull | check | status``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .root import cli, load_workspace


@cli.group("annotate")
def annotate() -> None:
    """Referring-expression annotation: import answers, check them, show progress.

    \b
    Answers live in tables/annotations.parquet (append-only, versioned); `check` writes
    tables/annotation_status.parquet: per instance accepted / needs_revision / conflict / pending_verification /
    missing, with reasons.  Accepted instances are what build-splits and later stages use.
    """


def _instances(ws):
    from ..records import Instances

    return list(Instances.from_parquet(ws.table("instances")))


@annotate.command("import")
@click.argument("source", type=click.Path(exists=True))
@click.option("--stage", type=click.Choice(["describe", "verify"]), help="Stage of a Label Studio export "
              "(default: guessed from the tasks).")
@click.option("--ravar-split", help="SOURCE is a folder with the RAVAR authors' pickles; import this split.")
@click.option("--allow-empty", is_flag=True, help="Accept a source without one usable answer (refused by default: "
              "an empty or wholly rejected export is usually the wrong file).")
@click.option("--verify-map", type=click.Path(exists=True, dir_okay=False),
              help="Merge this verify task map (task key -> instance, box numbers) into the workspace's before "
                   "importing: the map kept by the workspace that pushed the tasks (a backup, or the sample "
                   "corpus's). Keys that map to other answers are refused.")
@click.pass_context
def import_cmd(ctx, source, stage, ravar_split, allow_empty, verify_map):
    """Import answers from a Label Studio JSON export file (no server needed), or from the RAVAR authors'
    release (three pickles per split keyed video___timestamp___person, joined by key).  Importing the same
    file again adds nothing; edited answers are added as a new version."""
    from ..annotate.io import import_export_file, load_ravar_release, merge_annotations, ravar_to_rows
    from ..fsutil import write_json_atomic
    from ..validate import ProblemLog

    ws = load_workspace(ctx, "annotate import")
    known = {i.instance_id for i in _instances(ws)}
    table = ws.table("annotations")
    if ravar_split:
        records = load_ravar_release(source, ravar_split)
        rows, problems = ravar_to_rows(records, source=f"{Path(source).name}/{ravar_split}", known_instances=known)
        result = merge_annotations(table, rows, provenance={"source": str(source), "stage_kind": "describe"})
        result.problems, result.stage = problems, "describe"
    else:
        from ..annotate.labelstudio import add_verify_map, load_verify_map

        if verify_map:
            click.echo(f"verify map: {add_verify_map(ws, Path(verify_map))} task keys added from {verify_map}")
        result = import_export_file(source, table, stage=stage, known_instances=known, verify_map=load_verify_map(ws))
    log = ProblemLog(result.problems)
    report = ws.reports_dir / "annotate-import.json"
    write_json_atomic(report, {"source": str(source), "stage": result.stage, "added": result.added,
                               "updated": result.updated, "unchanged": result.unchanged, "version": result.version,
                               "problem_counts": log.counts(), "problems": log.to_list()})
    if not (result.added or result.updated or result.unchanged) and not allow_empty:
        why = f"all {len(log)} answer(s) were rejected: {log.counts()}" if log else "it holds no answers"
        lines = "\n".join(log.summary_lines()) if log else ""
        raise click.ClickException(f"{source}: expected answers to import, but {why}; {table} is unchanged. Check "
                                   f"that this is the right export (or pass --allow-empty); report: {report}"
                                   + (f"\n{lines}" if lines else ""))
    where = f"{table} (version {result.version})" if result.added or result.updated else f"{table} (nothing new)"
    click.echo(f"annotate import ({result.stage}): {result.added} new, {result.updated} updated, "
               f"{result.unchanged} already stored -> {where}")
    if log:
        click.echo(f"  {len(log)} answer(s) skipped:")
        for line in log.summary_lines():
            click.echo(line)
    click.echo(f"report: {report}")


@annotate.command("check")
@click.pass_context
def check_cmd(ctx):
    """Decide a status per instance: action words, length, duplicates within a clip, failed verification,
    flagged boxes, and describers who disagree.  Writes tables/annotation_status.parquet."""
    from ..annotate.checks import run

    click.echo(run(load_workspace(ctx, "annotate check")).text())


@annotate.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def status_cmd(ctx, as_json):
    """Progress per stage, verification accuracy, agreement between verifiers (Krippendorff's alpha, overall and
    per pair) and between describers, honeypot accuracy, and per annotator: expressions written, how often others
    found their people, verifications counted and self-verifications apart, rejection reasons; what to do next.
    Also written to reports/annotate-status.json; reports/annotation-lead.html draws every failed verification (the
    person meant and the box chosen) on its keyframe."""
    from ..annotate.checks import Rules, check_instances
    from ..annotate.io import read_annotations
    from ..annotate.status import annotation_status, failed_verifications, format_status, lead_report_html
    from ..fsutil import write_json_atomic, write_text_atomic

    ws = load_workspace(ctx)
    instances = _instances(ws)
    rows = read_annotations(ws.table("annotations"))
    rules = Rules.from_config(ws.config)
    status_rows = check_instances(instances, rows, rules)
    report = annotation_status(instances, rows, status_rows, rules)
    write_json_atomic(ws.reports_dir / "annotate-status.json", report)
    page = ws.reports_dir / "annotation-lead.html"
    write_text_atomic(page, lead_report_html(ws, report, failed_verifications(rows, status_rows), instances))
    click.echo(json.dumps(report, indent=2) if as_json else format_status(report))
    if not as_json:
        click.echo(f"lead's page (per annotator, failed verifications drawn): {page}")


@annotate.command("push")
@click.option("--stage", type=click.Choice(["describe", "verify"]), required=True,
              help="describe: one task per clip with every AVA box pre-drawn; verify: one task per described "
                   "person with numbered boxes and the expression.")
@click.option("--url", help="Label Studio URL (default: $LABEL_STUDIO_URL, else [labelstudio] url in refava.toml; "
              "for --stage verify, the verify server when [labelstudio.verify] url names one).")
@click.option("--all", "resend", is_flag=True, help="Resend every task, done or not, even those already there.")
@click.pass_context
def push_cmd(ctx, stage, url, resend):
    """Create or update the stage's Label Studio project and import the tasks that are still work: describe, the
    clips with a person lacking an accepted expression; verify, the expressions that passed the automatic checks
    and are not verified at their current text (never ones that failed a check). Pushing again never duplicates
    tasks. Verify tasks are blind: they show the numbered keyframe and the expression; which box is meant stays in
    the workspace (labelstudio/verify_tasks.json): keys, image names, the boxes' numbering and the push order come
    from the workspace's secret (labelstudio/secret.key or $REFAVA_ANNOTATION_SECRET). Each expression gets
    [annotation] verifiers_per_expression tasks; an answer that does not count (by its describer, by a verifier
    failing honeypots) gets a new task on the next push; [annotation] honeypot_share of the tasks are honeypots.
    The token comes from LABEL_STUDIO_API_KEY (LABEL_STUDIO_VERIFY_API_KEY for a separate verify server); keyframes
    are served from <workspace>/labelstudio/ through the server's local-files storage."""
    from ..annotate.labelstudio import Client, push, server_url, verify_client

    ws = load_workspace(ctx, "annotate push")
    client = verify_client(ws, url) if stage == "verify" else Client(server_url(ws, url))
    result = push(ws, stage, client, log=click.echo, resend=resend)
    for reason, n in result.skipped.items():
        click.echo(f"  skipped {n}: {reason}")


@annotate.command("pull")
@click.option("--url", help="Label Studio URL (default: $LABEL_STUDIO_URL, else [labelstudio] url in refava.toml).")
@click.option("--verify-url", help="The verify stage's server when it has its own (default: [labelstudio.verify] "
              "url, else $LABEL_STUDIO_VERIFY_URL, else the same server).")
@click.pass_context
def pull_cmd(ctx, url, verify_url):
    """Export both projects as full JSON (kept under labelstudio/exports/) and add the new answers to
    tables/annotations.parquet as a new version; pulling again adds only what is new."""
    from ..annotate.labelstudio import Client, pull, server_url, verify_client

    ws = load_workspace(ctx, "annotate pull")
    client = Client(server_url(ws, url))
    verify = verify_client(ws, verify_url, describe=client) if ws.config["labelstudio"]["verify_project"] else None
    pull(ws, client, verify_client=verify, log=click.echo)
