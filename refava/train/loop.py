"""Training and evaluation of RefAtomNet on a packaged RefAVA, and the dataset validation report.

The encoders are frozen (as in the paper), so every split is encoded once into features (Q-Former frame tokens,
text tokens, detector tokens) and the new layers are trained on those: AdamW (lr 1e-4, betas 0.9/0.98, eps 1e-6,
weight decay 0.2, none on biases and LayerNorms), linear warm-up then cosine, gradient clipping at 1.0, loss
5 x BCE + 1 x MSE.  Checkpoints are written atomically after every epoch and a rerun resumes from the last one.
"""
from __future__ import annotations

import contextlib
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
from ..fsutil import atomic_path, write_json_atomic
from .detections import DetectionTable
from .encoders import COCO_NAMES
from .model import RefAtomNet


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
    resumed = _resume(ckpt, identity, model, opt, sched, restart_other, log)
    if resumed is not None:
        history, start_epoch = resumed
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


def _resume(ckpt: Path, identity: dict, model, opt, sched, restart_other: bool, log) -> tuple[list, int] | None:
    """(history, next epoch) from the checkpoint of the same run, with model, optimizer, schedule and RNG restored;
    None to start afresh.  A checkpoint of another run is an error, or with ``restart_other`` ignored."""
    state = load_checkpoint(ckpt) if ckpt.exists() else None
    if state is not None and state.get("identity") != identity and restart_other:
        log(f"  {ckpt} is from another model, training configuration or data: starting this model over")
        state = None
    if state is None:
        return None
    if state.get("identity") != identity:
        raise TrainError(f"{ckpt} was written by a run with another model, training configuration or data "
                         f"({state.get('identity')}); delete {ckpt.parent} to start over, or use another output folder")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    log(f"  resumed from {ckpt} after epoch {state['epoch'] + 1}")
    return state["history"], state["epoch"] + 1


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


def tiny_train_config(**kw) -> TrainConfig:
    return replace(TrainConfig(epochs=30, batch_size=32, lr=1e-3, warmup=0.1), **kw)


def _groups(rows) -> list[int]:
    """Per class column of a dataset split (ClassLabel order): its action group, 0..2, from AVA's label types."""
    from ..ava import default_label_map

    kinds = {v.name: v.label_type for v in default_label_map().values()}
    order = {"PERSON_MOVEMENT": 0, "OBJECT_MANIPULATION": 1, "PERSON_INTERACTION": 2}
    return [order[kinds.get(n, "PERSON_MOVEMENT")] for n in rows.features["actions"].feature.names]


__all__ = ["TrainConfig", "TrainError", "evaluate", "featurize", "fit", "predict", "resolve_device",
           "tiny_train_config"]
