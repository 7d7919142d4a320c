"""RefAtomNet training throughput on the CPU (or a GPU when one is there), tiny and small configurations.

For each configuration: frozen encoders (random BLIP-2 / DETR of the real classes) encode a batch of 8-frame clips,
expressions and keyframes, and the new layers take an AdamW step.  Printed: training samples per second, and the
encoder-only (inference) samples per second measured in the same run, with their ratio (the share of the time the
trainable part costs).  ``--full`` adds the paper's full-size configuration with random weights (BLIP-2 ViT-g/14 and
a 12-layer Q-Former with 32 query tokens, DETR ResNet-50; ``encoders.full_encoders``), in float32 and, on a GPU, also
under bfloat16 autocast; meant for a GPU (on a CPU one full step takes minutes).

    python benchmarks/train.py [--steps 5] [--full] [--only full]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time

import torch

from refava.train.encoders import SIZES, full_encoders, tiny_encoders
from refava.train.loop import _optimizer, tiny_train_config
from refava.train.model import ModelConfig, RefAtomNet

CONFIGS = {name: dict(size, batch=8) for name, size in SIZES.items()}  # image size, width, query tokens, batch


def measure(name: str, image_size: int, dim: int, tokens: int, batch: int, steps: int, device: str,
            amp: bool = False) -> None:
    enc = full_encoders(0) if name == "full" else tiny_encoders(0, image_size=image_size, dim=dim, tokens=tokens)
    enc.to(device)
    image_size, dim, tokens = enc.image_size, enc.dim, enc.tokens
    model = RefAtomNet(ModelConfig(dim=enc.dim, tokens=enc.tokens, detections=enc.queries,
                                   text_dim=enc.text_dim)).to(device)
    opt = _optimizer(model, tiny_train_config())
    frames = torch.rand(batch, 8, 3, image_size, image_size, device=device)
    keyframes = torch.rand(batch, 3, image_size, image_size, device=device)
    texts = ["the man in a grey vest on the left"] * batch
    labels = (torch.rand(batch, 80, device=device) < 0.05).float()
    boxes = torch.rand(batch, 4, device=device)

    def encode():
        with (torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()):
            v = enc.frames(frames)
            t, m = enc.text(texts)
            d = enc.detections(keyframes)
        return v.float(), t.float(), m, d.float()

    def step():
        v, t, m, d = encode()
        logits, pred = model(v, t, m, d)
        loss, _ = model.loss(logits, pred, labels, boxes)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for fn in (encode, step):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    timings = {}
    for label, fn in (("encoders only", encode), ("training step", step)):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        timings[label] = steps * batch / (time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    frozen = sum(p.numel() for m in (enc.blip2, enc.detr) for p in m.parameters())
    label = f"{name} (bf16)" if amp else name
    print(f"{label:<11} {image_size}px, width {dim}, {tokens} tokens, batch {batch}, {frozen / 1e6:.1f} M frozen, "
          f"{params / 1e6:.2f} M trainable: "
          f"{timings['training step']:.1f} samples/s training, {timings['encoders only']:.1f} samples/s encoding "
          f"only (ratio {timings['training step'] / timings['encoders only']:.2f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--full", action="store_true", help="add the full-size configuration (random weights)")
    ap.add_argument("--only", choices=[*CONFIGS, "full"], help="measure this configuration alone")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    where = torch.cuda.get_device_name() if device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device: {device} ({where}), torch {torch.__version__}")
    configs = dict(CONFIGS)
    if args.full or args.only == "full":
        configs["full"] = dict(image_size=224, dim=768, tokens=32, batch=16)
    for name, c in configs.items():
        if args.only and name != args.only:
            continue
        measure(name, steps=args.steps, device=device, **c)
        if name == "full" and device == "cuda":
            measure(name, steps=args.steps, device=device, amp=True, **c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
