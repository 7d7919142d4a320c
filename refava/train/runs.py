"""Runs of ``refava train`` and ``refava evaluate``: encoders from a spec, a run folder, its evaluation."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import torch

from .. import metrics as M
from ..fsutil import write_json_atomic
from .detections import DetectionTable, load_detection_table
from .model import ModelConfig, RefAtomNet


from .loop import (TrainConfig, TrainError, _groups, featurize, fit, load_checkpoint, predict, resolve_device,
                   seed_everything)
from .validation import _model_config, _quiet


# --- runs (refava train / refava evaluate) -----------------------------------------------------------------------

def make_encoders(spec: dict):
    """Encoders from a run's spec: {"tiny": {...}} or {"blip2": PATH, "detr": PATH or None} (a "detections" table
    path in the spec is read by :func:`_detections_of`)."""
    from .encoders import PERSON_THRESHOLD, load_encoders, tiny_encoders

    encoders = tiny_encoders(**spec["tiny"]) if "tiny" in spec else load_encoders(spec["blip2"], spec.get("detr"))
    encoders.person_threshold = spec.get("person_threshold", PERSON_THRESHOLD)
    return encoders


def _detections_of(spec: dict) -> DetectionTable | None:
    """The detections table a run's encoder spec names, or None (the detector then feeds the location stream)."""
    from .encoders import PERSON_THRESHOLD

    if not spec.get("detections"):
        return None
    return load_detection_table(spec["detections"], min_score=spec.get("person_threshold", PERSON_THRESHOLD))


def _load(dataset_dir: str, split: str):
    import datasets

    ds = datasets.load_dataset(str(dataset_dir))
    if split not in ds:
        raise TrainError(f"{dataset_dir} has no split {split!r}; it has {', '.join(ds)}")
    return ds[split]


def train_run(dataset_dir: str, run_dir: str | os.PathLike, *, encoder_spec: dict, cfg: TrainConfig,
              model_overrides: dict | None = None, log: Callable[[str], None] = print,
              device: str | None = "auto") -> list[dict]:
    """Train on ``train``, validate on ``validation`` each epoch; run_dir holds run.json, checkpoint.pt, metrics.
    Under ``torchrun`` (WORLD_SIZE > 1) it joins the process group (gloo on CPU, nccl on GPUs) first."""
    run = Path(run_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if (run / "checkpoint.pt").exists() and (run / "run.json").exists():
        before = json.loads((run / "run.json").read_text()).get("encoders")
        if before != json.loads(json.dumps(encoder_spec)):
            raise TrainError(f"{run} holds a run trained with other encoders ({before}) than these ({encoder_spec}); "
                             f"delete {run} to start over, or train into another --run folder")
    encoders = make_encoders(encoder_spec).to(device)
    table = _detections_of(encoder_spec)
    log(f"encoding the train and validation splits on {device} ...")
    train = featurize(_load(dataset_dir, "train"), encoders, frames=cfg.frames, detections=table, log=_quiet(log))
    val = featurize(_load(dataset_dir, "validation"), encoders, frames=cfg.frames, detections=table, log=_quiet(log))
    mcfg = replace(_model_config(encoders, table), **(model_overrides or {}))
    run.mkdir(parents=True, exist_ok=True)
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        write_json_atomic(run / "run.json", {"dataset": str(dataset_dir), "encoders": encoder_spec,
                                             "model": asdict(mcfg), "train": asdict(cfg)})
    seed_everything(cfg.seed)
    return fit(RefAtomNet(mcfg), train, val, cfg, run, log=log, device=device)


def evaluate_run(run_dir: str | os.PathLike, split: str = "test", dataset_dir: str | None = None,
                 device: str | None = "auto", test_clips: int = 1,
                 predictions_out: str | os.PathLike | None = None) -> dict:
    """Metrics of a trained run's checkpoint on ``split``; written to run_dir/eval_<split>.json.  With
    ``predictions_out`` the run's predictions are also written there as JSON lines, the file the official scorer
    (``refava evaluate --predictions``) reads and scores to the same numbers."""
    run = Path(run_dir)
    try:
        spec = json.loads((run / "run.json").read_text())
        state = load_checkpoint(run / "checkpoint.pt")
    except FileNotFoundError as exc:
        raise TrainError(f"{run}: no trained run here ({exc.filename} missing); run `refava train` first") from exc
    model = RefAtomNet(ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["model"].items()}))
    model.load_state_dict(state["model"])
    device = resolve_device(device)
    model.to(device)
    encoders = make_encoders(spec["encoders"]).to(device)
    table = _detections_of(spec["encoders"])
    if table is not None:
        table.k = model.config.detections                  # the slots the model was trained with
    rows = _load(dataset_dir or spec["dataset"], split)
    feats = featurize(rows, encoders, frames=spec["train"]["frames"], detections=table, test_clips=test_clips)
    scores, boxes = predict(model, feats)
    metrics = M.evaluate(feats["labels"].numpy(), scores, boxes, feats["boxes"].numpy(), groups=_groups(rows))
    result = {"split": split, "epoch": state["epoch"] + 1, "test_clips": test_clips, **metrics}
    if predictions_out is not None:
        from ..scorer import write_predictions

        write_predictions(predictions_out, rows["instance_id"], scores, boxes)
    write_json_atomic(run / f"eval_{split}.json", result)
    return result


__all__ = ["evaluate_run", "make_encoders", "train_run"]
