"""Training and evaluation of RefAtomNet on a packaged RefAVA, and the dataset validation report.

The encoders are frozen (as in the paper), so every split is encoded once into features (Q-Former frame tokens,
text tokens, detector tokens) and the new layers are trained on those: AdamW (lr 1e-4, betas 0.9/0.98, eps 1e-6,
weight decay 0.2, none on biases and LayerNorms), linear warm-up then cosine, gradient clipping at 1.0, loss
5 x BCE + 1 x MSE.  Checkpoints are written atomically after every epoch and a rerun resumes from the last one.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import metrics as M
from ..errors import RefavaError
from ..fsutil import atomic_path, write_json_atomic, write_text_atomic
from .detections import DetectionTable, load_detection_table
from .encoders import COCO_NAMES
from .model import ModelConfig, RefAtomNet


class TrainError(RefavaError, RuntimeError):
    pass


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-4
    betas: tuple = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.2
    warmup: float = 0.1
    clip: float = 1.0
    seed: int = 0
    frames: int = 8


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto``: this process's GPU when CUDA is there (``cuda:LOCAL_RANK`` under torchrun), else the CPU."""
    name = name or "auto"
    if name == "auto":
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainError(f"--device {name}: not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu "
                         f"(or auto), or install a CUDA build of torch {torch.__version__.split('+')[0]}")
    if device.type == "cuda" and device.index is None:      # plain `cuda`: this process's GPU
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- features -----------------------------------------------------------------------------------------------------

def _pixels(images, size: int) -> torch.Tensor:
    arrays = [np.asarray(im.convert("RGB").resize((size, size))) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def clip_indices(stored: int, frames: int, clip: int = 0, clips: int = 1) -> np.ndarray:
    """Which of a row's ``stored`` sampled frames clip ``clip`` of ``clips`` takes: ``frames`` frames uniformly over
    the window, the clips shifted by a fraction of the stride (the authors' test-time clips).  One clip: the frames
    spread from the first to the last stored one.

    >>> clip_indices(90, 8).tolist(), clip_indices(90, 8, 1, 11).tolist()
    ([0, 13, 25, 38, 51, 64, 76, 89], [1, 12, 24, 35, 46, 57, 69, 80])
    """
    if clips <= 1:
        return np.linspace(0, stored - 1, frames).round().astype(int)
    stride = stored / frames
    return np.minimum(stored - 1, np.floor(np.arange(frames) * stride + clip * stride / clips + 0.5)).astype(int)


def featurize(rows, encoders, *, frames: int = 8, batch: int = 16, log: Callable[[str], None] = lambda *_: None,
              bf16: bool = True, detections: DetectionTable | None = None, test_clips: int = 1):
    """Encode a ``datasets.Dataset`` split once: tensors for the model, labels, boxes and clip ids (on the CPU).
    Location tokens come from ``detections`` (a proposals or detections table) when given, else from the detector.
    On a GPU the frozen towers run under bfloat16 autocast unless ``bf16=False`` (on an H100 with the full-size
    towers: 7x the float32 encoder throughput; 2.4x end to end on the sample, where JPEG decoding then dominates).
    ``test_clips`` > 1 encodes that many clips of ``frames`` frames per row (visual features (B, clips, n, d)), whose
    logits :func:`predict` averages, as the authors' evaluation does over 11 clips (with ``--frames all`` data)."""
    out = {k: [] for k in ("visual", "text", "mask", "det", "labels", "boxes")}
    clips, n = [], len(rows)
    on_gpu = encoders.device.type == "cuda"
    missing_before = len(detections.missing) if detections is not None else 0
    with torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu and bf16 else contextlib.nullcontext():
        for start in range(0, n, batch):
            _encode_batch(rows[start:start + batch], encoders, frames, out, clips, detections, test_clips)
            log(f"  encoded {min(n, start + batch)}/{n}")
    if detections is not None and len(detections.missing) > missing_before:
        log(f"  {len(detections.missing) - missing_before} keyframe(s) have no detections in {detections.source}: "
            f"their location tokens are zeros")
    width = max(t.shape[1] for t in out["text"])
    out["text"] = torch.cat([torch.nn.functional.pad(t, (0, 0, 0, width - t.shape[1])) for t in out["text"]])
    out["mask"] = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for m in out["mask"]])
    for key in ("visual", "det", "labels", "boxes"):
        out[key] = torch.cat(out[key]) if out[key] else None
    out["clips"] = clips
    return out


def _encode_batch(chunk: dict, encoders, frames: int, out: dict, clips: list, detections=None,
                  test_clips: int = 1) -> None:
    size = encoders.image_size
    per_clip = []
    for j in range(test_clips):
        pix = []
        for sampled in chunk["frames"]:
            idx = clip_indices(len(sampled), frames, j, test_clips) if sampled else []
            pix.append(_pixels([sampled[i] for i in idx], size))
        per_clip.append(encoders.frames(torch.stack(pix)).float().cpu())
    out["visual"].append(per_clip[0] if test_clips == 1 else torch.stack(per_clip, dim=1))
    text, mask = encoders.text(chunk["expression"])
    out["text"].append(text.float().cpu())
    out["mask"].append(mask.cpu())
    if detections is not None:
        person = encoders.class_names()[COCO_NAMES.index("person")].float().cpu()
        out["det"].append(detections.tokens(chunk["video_id"], chunk["keyframe_s"], person))
    elif encoders.detr is not None:
        out["det"].append(encoders.detections(_pixels(chunk["keyframe"], size)).float().cpu())
    labels = torch.zeros(len(chunk["actions"]), 80)
    for i, acts in enumerate(chunk["actions"]):
        labels[i, acts] = 1.0
    out["labels"].append(labels)
    out["boxes"].append(torch.tensor(chunk["box"], dtype=torch.float32))
    clips += [f"{v}___{t:04d}" for v, t in zip(chunk["video_id"], chunk["keyframe_s"])]


def shuffle_text_within_clips(feats: dict, seed: int) -> dict:
    """The control 'text shuffled among the people of each clip': every person gets another's expression."""
    rng = np.random.default_rng(seed)
    order = np.arange(len(feats["clips"]))
    by_clip: dict[str, list[int]] = {}
    for i, c in enumerate(feats["clips"]):
        by_clip.setdefault(c, []).append(i)
    for members in by_clip.values():
        if len(members) > 1:
            order[members] = np.roll(members, int(rng.integers(1, len(members))))
    return {**feats, "text": feats["text"][order], "mask": feats["mask"][order]}


def without_text(feats: dict) -> dict:
    return {**feats, "text": torch.zeros_like(feats["text"]), "mask": torch.ones_like(feats["mask"])}


# --- training -----------------------------------------------------------------------------------------------------

def _optimizer(model: torch.nn.Module, cfg: TrainConfig):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def _schedule(optimizer, total_steps: int, warmup: float):
    warm = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _on(feats: dict, device: torch.device) -> dict:
    """The feature tensors on ``device`` (the clip ids stay as they are)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in feats.items()}


def predict(model: RefAtomNet, feats: dict, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    device = next(model.parameters()).device
    logits, boxes = [], []
    with torch.no_grad():
        for s in range(0, feats["labels"].shape[0], batch):
            sl = slice(s, s + batch)
            visual = feats["visual"][sl].to(device)
            clips = visual.unbind(1) if visual.dim() == 4 else [visual]      # test-time clips: logits averaged
            outs = [model(v, feats["text"][sl].to(device), feats["mask"][sl].to(device),
                          feats["det"][sl].to(device) if feats["det"] is not None else None) for v in clips]
            logits.append(torch.sigmoid(torch.stack([lo for lo, _ in outs]).mean(0)).cpu())
            boxes.append(torch.stack([bx for _, bx in outs]).mean(0).cpu())
    return torch.cat(logits).numpy(), torch.cat(boxes).numpy()


def evaluate(model: RefAtomNet, feats: dict, groups=None) -> dict:
    scores, boxes = predict(model, feats)
    return M.evaluate(feats["labels"].numpy(), scores, boxes, feats["boxes"].numpy(), groups=groups)


def fit(model: RefAtomNet, train: dict, val: dict, cfg: TrainConfig, out_dir: Path, *, groups=None,
        log: Callable[[str], None] = print, device: str | torch.device | None = "auto",
        restart_other: bool = False) -> list[dict]:
    """Train with checkpoints in ``out_dir``; returns per-epoch metrics (also metrics.json and metrics.png).
    The model and the (small, pre-encoded) features live on ``device`` while training.  A checkpoint of the same
    run resumes; one of another configuration is an error, or with ``restart_other`` is replaced."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    model.to(device)
    train = _on(train, device)
    n = train["labels"].shape[0]
    # torchrun / torch.distributed: every rank walks the same global batches and takes its share of each; the local
    # loss is scaled so that DDP's average of gradients is the gradient of the global batch's mean loss
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    net = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    opt = _optimizer(model, cfg)
    sched = _schedule(opt, steps_per_epoch * cfg.epochs, cfg.warmup)
    history: list[dict] = []
    start_epoch = 0
    ckpt = out_dir / "checkpoint.pt"
    identity = {"model": asdict(model.config), "train": asdict(cfg), "rows": n}
    state = load_checkpoint(ckpt) if ckpt.exists() else None
    if state is not None and state.get("identity") != identity and restart_other:
        log(f"  {ckpt} is from another model, training configuration or data: starting this model over")
        state = None
    if state is not None:
        if state.get("identity") != identity:
            raise TrainError(f"{ckpt} was written by a run with another model, training configuration or data "
                             f"({state.get('identity')}); delete {out_dir} to start over, or use another output folder")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, start_epoch = state["history"], state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        log(f"  resumed from {ckpt} after epoch {state['epoch'] + 1}")
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        losses = []
        for s in range(0, n, cfg.batch_size):
            batch = order[s:s + cfg.batch_size]
            idx = batch[rank::world]
            if len(idx) == 0:                # fewer samples than ranks in the last batch: this rank adds nothing
                idx = batch[:1]
                share = 0.0
            else:
                share = len(idx) / len(batch) * world
            logits, boxes = net(train["visual"][idx], train["text"][idx], train["mask"][idx],
                                train["det"][idx] if train["det"] is not None else None)
            loss, parts = model.loss(logits, boxes, train["labels"][idx], train["boxes"][idx])
            opt.zero_grad()
            (loss * share).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            sched.step()
            losses.append(float(_global_mean(loss.detach() * share / world, distributed)))
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), **evaluate(model, val, groups)}
        history.append(record)
        if rank != 0:
            continue
        log(f"  epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f}, val mAP {record['map_macro']:.2f}, "
            f"AUROC {record['auroc_macro']:.2f}, mIOU {record['miou']:.2f}")
        with atomic_path(ckpt) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "epoch": epoch, "history": history, "torch_rng": torch.get_rng_state(),
                        "identity": identity}, tmp)
    if rank == 0:
        write_json_atomic(out_dir / "metrics.json", history)
        plot_history(history, out_dir / "metrics.png")
    return history


def _manifest_hash(dataset_dir) -> str | None:
    """sha256 of the packaged dataset's manifest: `refava status` tells a validation of an older package."""
    from ..fsutil import sha256_file

    path = Path(dataset_dir) / "refava-manifest.json"
    return sha256_file(path) if path.exists() else None


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's tensors, numbers and strings, never code: ``torch.load(weights_only=True)``, so a crafted
    ``checkpoint.pt`` cannot run anything on resume or evaluation."""
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise TrainError(f"{path}: expected a refava checkpoint holding weights only, found other objects "
                         f"({str(exc).splitlines()[0][:200]}); it was not loaded. Delete it and train again if you "
                         f"did not put it there") from None
    if not isinstance(state, dict) or "model" not in state:
        raise TrainError(f"{path}: expected a refava checkpoint (a dict with 'model'), found {type(state).__name__}")
    return state


def _global_mean(value: torch.Tensor, distributed: bool) -> torch.Tensor:
    """The batch's mean loss: each rank's scaled share, summed over ranks."""
    if distributed:
        value = value.clone()
        torch.distributed.all_reduce(value)
    return value


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = [h["epoch"] for h in history]
    axes[0].plot(epochs, [h["loss"] for h in history])
    axes[0].set(title="training loss", xlabel="epoch")
    for key in ("map_macro", "auroc_macro", "miou"):
        axes[1].plot(epochs, [h[key] for h in history], label=key)
    axes[1].set(title="validation", xlabel="epoch")
    axes[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def class_prior(train: dict, test: dict, groups=None) -> dict:
    """The control that predicts the training frequency of every class for everyone, and the mean box."""
    prior = train["labels"].mean(0, keepdim=True).expand_as(test["labels"]).numpy()
    box = train["boxes"].mean(0, keepdim=True).expand_as(test["boxes"]).numpy()
    return M.evaluate(test["labels"].numpy(), prior, box, test["boxes"].numpy(), groups=groups)


def load_train_and_held_out(dataset_dir: str | os.PathLike):
    """The packaged dataset through ``datasets.load_dataset``, with every held-out movie joined into one evaluation
    split (the sample's test split alone is one movie); returns the DatasetDict and that split's name
    (``validation+test``, or whichever of the two has rows)."""
    import datasets

    ds = datasets.load_dataset(str(dataset_dir))
    held_out = [s for s in ("validation", "test") if s in ds and len(ds[s])]
    if "train" not in ds or not len(ds["train"]) or not held_out:
        raise TrainError(f"{dataset_dir}: needs a train split and a validation or test split with rows")
    eval_split = "+".join(held_out)
    ds[eval_split] = datasets.concatenate_datasets([ds[s] for s in held_out])
    return ds, eval_split


def validate_dataset(dataset_dir: str | os.PathLike, out_dir: str | os.PathLike, *, encoders, cfg: TrainConfig,
                     model_cfg: ModelConfig | None = None, log: Callable[[str], None] = print,
                     device: str | None = "auto", detections: DetectionTable | None = None, seeds: int = 1,
                     pretrained: bool = False, probe_epochs: int | None = None) -> dict:
    """The dataset's validation, in two parts, written to report.json/.md.

    1. Does the data carry the referent?  The referent probe (:mod:`refava.train.probe`), true against clip-shuffled
       expressions over ``seeds`` seeds, on the person proposals of ``detections``; it stands on random encoders.
    2. Does RefAtomNet beat the controls?  The reference model and two trained controls (shuffled text, no text) on
       the train split, they and the class-prior control evaluated on the held-out split.  The report calls this
       evidence only with ``pretrained`` encoders (real BLIP-2 and DETR); with random ones it says it cannot tell.

    ``detections``: a proposals/detections table for the location stream instead of the detector; ``seeds``: each
    trained model is trained that many times (seeds cfg.seed, cfg.seed + 1, ...), and reported as mean and sd."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds, eval_split = load_train_and_held_out(dataset_dir)
    groups = _groups(ds["train"])
    device = resolve_device(device)
    encoders.to(device)
    log(f"encoding train ({len(ds['train'])}) and {eval_split} ({len(ds[eval_split])}) with frozen encoders "
        f"on {device} ...")
    train = featurize(ds["train"], encoders, frames=cfg.frames, detections=detections, log=_quiet(log))
    test = featurize(ds[eval_split], encoders, frames=cfg.frames, detections=detections, log=_quiet(log))
    base = model_cfg or _model_config(encoders, detections)
    runs: dict[str, list[dict]] = {}
    for k in range(seeds):
        seed_cfg = replace(cfg, seed=cfg.seed + k)
        for name, tr, te in (("refatomnet", train, test),
                             ("shuffled_text", shuffle_text_within_clips(train, seed_cfg.seed),
                              shuffle_text_within_clips(test, seed_cfg.seed + 1)),
                             ("no_text", without_text(train), without_text(test))):
            log(f"training {name} (seed {seed_cfg.seed}) ...")
            seed_everything(seed_cfg.seed)
            model = RefAtomNet(base)
            fit(model, tr, te, seed_cfg, out / name / f"seed-{seed_cfg.seed}", groups=groups, log=log, device=device,
                restart_other=True)
            runs.setdefault(name, []).append(evaluate(model, te, groups))
    results = {name: _mean_of_runs(r) for name, r in runs.items()}
    results["class_prior"] = class_prior(train, test, groups)
    ref = results["refatomnet"]
    beats, margins = {}, {}
    for name, v in results.items():
        if name == "refatomnet":
            continue
        diff = ref["map_macro"] - v["map_macro"]
        noise = math.hypot(ref.get("map_macro_sd", 0.0), v.get("map_macro_sd", 0.0))
        beats[name] = diff > 0
        margins[name] = {"difference": diff, "seed_sd": noise, "beyond_seed_noise": diff > noise if seeds > 1 else None}
    chance = near_chance({name: results[name] for name in runs})
    verdict = _verdict(beats, margins, chance) if pretrained else (
        "cannot be told with random encoders: RefAtomNet singles out the referent only through its attention over "
        "visual tokens, which random towers fill with the scene; the comparison is evidence only with pretrained "
        "encoders (--blip2, --detr). The numbers are shown for reference")
    data = _data_part(train, test, detections, max(3, seeds), probe_epochs, log)   # the probe is cheap
    report = {"dataset": str(dataset_dir), "dataset_manifest_sha256": _manifest_hash(dataset_dir),
              "evaluated_on": eval_split, "train_rows": len(ds["train"]),
              "eval_rows": len(ds[eval_split]), "config": asdict(cfg), "seeds": seeds, "model": asdict(base),
              "encoders": _encoder_shape(encoders), "location_stream": _location_source(encoders, detections),
              "keyframes_without_detections": len(detections.missing) if detections is not None else None,
              "results": results, "runs": runs, "refatomnet_beats": beats, "margins": margins, "verdict": verdict,
              "near_chance": chance, "pretrained_encoders": pretrained, "data": data,
              "data_verdict": data["verdict"], "model_verdict": verdict}
    write_json_atomic(out / "report.json", report)
    spread = f" (mean +- sd over {seeds} seeds)" if seeds > 1 else ""
    lines = ["# Dataset validation", "", "## 1. Does the data carry the referent?", ""]
    lines += _data_lines(data)
    lines += ["## 2. Does RefAtomNet beat the controls?", "",
              f"Evaluated on `{eval_split}` ({report['eval_rows']} rows) after training on "
              f"{report['train_rows']} rows for {cfg.epochs} epochs; encoders: {report['encoders']}"
              f"{'' if pretrained else ' (random)'}; location stream: {report['location_stream']}.", "",
              f"| model | mAP (macro){spread} | mAP (weighted) | AUROC (macro) | mIOU |", "|---|---:|---:|---:|---:|"]
    for k, v in results.items():
        sd = f" +- {v['map_macro_sd']:.2f}" if "map_macro_sd" in v else ""
        lines.append(f"| {k} | {v['map_macro']:.2f}{sd} | {v['map_weighted']:.2f} | {v['auroc_macro']:.2f} | "
                     f"{v.get('miou', float('nan')):.2f} |")
    lines += ["", f"**Verdict:** {report['verdict']}.", ""]
    if chance and pretrained:
        lines += [f"**Note:** {', '.join(chance)} rank the people of each class no better than chance (macro AUROC "
                  f"within {CHANCE_AUROC:g} of 50, a constant score's): they learned the class frequencies, not who "
                  f"does what, so the comparison above says little about the expressions. With random encoders "
                  f"it stayed so over seven draws of the sample corpus (`tools/validation_sweep.py`); real encoders "
                  f"(--blip2, --detr) are needed before it does. "
                  f"`tools/referent_probe.py` asks whether the text picks out the person directly.", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    return report


CHANCE_AUROC = 3.0       # macro AUROC points around 50 within which a trained model is said to rank at chance


def _data_part(train: dict, test: dict, detections: DetectionTable | None, seeds: int, epochs: int | None,
               log: Callable[[str], None]) -> dict:
    """Part 1 of the report: the referent probe on the person proposals, or why it cannot run."""
    from .probe import PROBE_EPOCHS, referent_probe

    if detections is None:
        return {"verdict": "cannot be told without person proposals: pass --detections (AVA's dense proposals or a "
                           "detections csv), or set [ava] proposals in refava.toml", "carries_referent": None}
    log(f"referent probe: true and clip-shuffled expressions, {seeds} seed(s) ...")
    return referent_probe(train, test, seeds=seeds, epochs=epochs or PROBE_EPOCHS)


def _data_lines(data: dict) -> list[str]:
    if "arms" not in data:
        return [f"**Verdict:** {data['verdict']}.", ""]
    spread = f" (mean +- sd over {data['seeds']} seeds)" if data["seeds"] > 1 else ""
    lines = ["A text-conditioned attention over the keyframe's person proposals picks one box and classifies the "
             "actions from it (`refava.train.probe`), trained with the true expressions and with the expressions "
             "shuffled among the people of each clip.", "",
             f"| expressions | referent picked (%){spread} | mAP (macro) | AUROC (macro) | mIOU |",
             "|---|---:|---:|---:|---:|"]
    for name, arm in data["arms"].items():
        lines.append(f"| {name.replace('_', ' ')} | {arm['referent_picked']:.1f} +- {arm['referent_picked_sd']:.1f} | "
                     f"{arm['map_macro']:.2f} | {arm['auroc_macro']:.2f} | {arm['miou']:.2f} |")
    lines += [f"| random pick | {data['chance_picked']:.1f} | | | |", "", f"**Verdict:** {data['verdict']}.", ""]
    return lines


def _verdict(beats: dict[str, bool], margins: dict[str, dict], chance: list[str]) -> str:
    """One sentence: does RefAtomNet beat every control on mAP, which leads are within the seeds' spread, and is a
    win worth anything (a RefAtomNet that ranks at chance beats the controls on class frequencies, not people)."""
    losing = [k for k, b in beats.items() if not b]
    within = [k for k, m in margins.items() if beats[k] and m["beyond_seed_noise"] is False]
    if losing:
        verdict = "RefAtomNet does not beat every control: " + ", ".join(losing)
    elif "refatomnet" in chance:
        verdict = ("RefAtomNet beats every control on mAP but ranks at chance (see the note), so this does not show "
                   "that the expressions carry the referent")
    else:
        verdict = "the expressions carry the referent: RefAtomNet beats every control on mAP"
    if within:
        verdict += f" (within the seeds' spread against {', '.join(within)})"
    return verdict


def near_chance(results: dict[str, dict]) -> list[str]:
    """The trained models whose macro AUROC is within ``CHANCE_AUROC`` of 50: whatever their mAP, they do not order
    the people of a class by whether they do it, so comparing them says little about the expressions."""
    return [name for name, r in results.items() if abs(r["auroc_macro"] - 50.0) < CHANCE_AUROC]


def _mean_of_runs(runs: list[dict]) -> dict:
    """Every metric's mean over the seeds' runs, and the standard deviation of mAP (macro) when there are several."""
    out = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    out["classes_evaluated"] = runs[0]["classes_evaluated"]
    if len(runs) > 1:
        out["map_macro_sd"] = float(np.std([r["map_macro"] for r in runs], ddof=1))
    return out


def _quiet(log: Callable[[str], None]) -> Callable[[str], None]:
    """Only the lines that are not per-batch progress."""
    return lambda line: None if line.lstrip().startswith("encoded ") else log(line)


def _model_config(encoders, detections: DetectionTable | None) -> ModelConfig:
    if detections is not None:
        return ModelConfig(dim=encoders.dim, tokens=encoders.tokens, detections=detections.k,
                           text_dim=encoders.text_dim, location=True)
    return ModelConfig(dim=encoders.dim, tokens=encoders.tokens, detections=max(1, encoders.queries),
                       text_dim=encoders.text_dim, location=encoders.detr is not None)


def _encoder_shape(encoders) -> str:
    text = "MiniLM sentence encoder" if encoders.sentence else "Q-Former text path"
    return (f"{encoders.image_size} px frames, {encoders.tokens} query tokens {encoders.dim} wide, {text} "
            f"({encoders.text_dim} wide)")


def _location_source(encoders, detections: DetectionTable | None) -> str:
    if detections is not None:
        return f"detections table {detections.source} (up to {detections.k} per keyframe)"
    return "the detector on the keyframe" if encoders.detr is not None else "none"


def tiny_train_config(**kw) -> TrainConfig:
    return replace(TrainConfig(epochs=30, batch_size=32, lr=1e-3, warmup=0.1), **kw)


__all__ = ["TrainConfig", "TrainError", "evaluate", "evaluate_run", "featurize", "fit", "load_train_and_held_out",
           "resolve_device", "train_run", "validate_dataset"]


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


def _groups(rows) -> list[int]:
    """Per class column of a dataset split (ClassLabel order): its action group, 0..2, from AVA's label types."""
    from ..ava import default_label_map

    kinds = {v.name: v.label_type for v in default_label_map().values()}
    order = {"PERSON_MOVEMENT": 0, "OBJECT_MANIPULATION": 1, "PERSON_INTERACTION": 2}
    return [order[kinds.get(n, "PERSON_MOVEMENT")] for n in rows.features["actions"].feature.names]


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
