"""Does the text pick out the person?  A diagnostic beside ``refava validate-dataset``, not part of its verdict.

RefAtomNet can only single out the referent through its attention over the visual tokens; with the random tiny
towers used on the CPU those tokens carry no people, so its validation run there cannot show whether the expressions
carry the referent.  This probe asks directly: a small text-conditioned attention over the keyframe's proposals (the
location stream's boxes) picks one box, the actions are classified from that box alone, and it is trained with BCE
on the actions plus MSE of the picked box against the referent's.  It runs with the true expressions and with the
expressions shuffled among the people of each clip (the validation report's control), over several seeds, and prints
mAP, AUROC, mIOU and how often the picked box is the referent's proposal, on the held-out movies.

    python tools/referent_probe.py demo/ws/refava demo/sample/annotations/ava_dense_proposals_sample.pkl
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from refava import metrics as M
from refava.train.detections import load_detection_table
from refava.train.encoders import tiny_encoders
from refava.train.loop import featurize, load_train_and_held_out, shuffle_text_within_clips


class BoxPicker(torch.nn.Module):
    """Scores every proposal against the expression, takes the softmax-weighted box, classifies from it."""

    def __init__(self, text_dim: int, width: int = 64):
        super().__init__()
        self.query = torch.nn.Sequential(torch.nn.Linear(text_dim, width), torch.nn.ReLU(), torch.nn.Linear(width, 32))
        self.key = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(), torch.nn.Linear(width, 32))
        self.head = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 80))

    def scores(self, text, boxes, present):
        """Per proposal: its box and its offset from the keyframe's mean box (so no slot order is assumed)."""
        mean = (boxes * present.unsqueeze(-1)).sum(1, keepdim=True) / present.sum(1).clamp(min=1).view(-1, 1, 1)
        keys = self.key(torch.cat([boxes, boxes - mean], dim=-1))
        return (self.query(text).unsqueeze(1) * keys).sum(-1).masked_fill(~present, -1e4)

    def forward(self, text, boxes, present):
        """Action logits, the picked (softmax-weighted) box, and the proposals' scores."""
        scores = self.scores(text, boxes, present)
        picked = (scores.softmax(-1).unsqueeze(-1) * boxes).sum(1)
        return self.head(picked), picked, scores


def _inputs(feats: dict):
    mask = feats["mask"].unsqueeze(-1).float()
    text = (feats["text"] * mask).sum(1) / mask.sum(1).clamp(min=1)
    boxes = feats["det"][:, :, :4]
    return text, boxes, boxes.abs().sum(-1) > 0


def _referent_slot(boxes: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per row, the proposal that overlaps the referent's box most."""
    n, k, _ = boxes.shape
    iou = M.box_iou(boxes.reshape(-1, 4).numpy(), gt.unsqueeze(1).expand(n, k, 4).reshape(-1, 4).numpy())
    return torch.from_numpy(iou.reshape(n, k).argmax(1))


def probe(train: dict, test: dict, seed: int, epochs: int) -> dict:
    (text, boxes, present), (t_text, t_boxes, t_present) = _inputs(train), _inputs(test)
    mu, sd = text.mean(0), text.std(0) + 1e-6                 # the training split's statistics for both
    text, t_text = (text - mu) / sd, (t_text - mu) / sd
    torch.manual_seed(seed)
    model = BoxPicker(text.shape[1])
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-2)
    for _ in range(epochs):                                   # full batch: the sample is small
        logits, picked, _ = model(text, boxes, present)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, train["labels"])
                + 10 * torch.nn.functional.mse_loss(picked, train["boxes"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits, picked, scores = model(t_text, t_boxes, t_present)
        chosen = scores.argmax(1)
    result = M.evaluate(test["labels"].numpy(), torch.sigmoid(logits).numpy(), picked.numpy(), test["boxes"].numpy())
    result["referent_picked"] = 100 * float((chosen == _referent_slot(t_boxes, test["boxes"])).float().mean())
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="packaged RefAVA folder (refava package)")
    parser.add_argument("proposals", help="dense-proposals pickle or detections csv (as validate-dataset --detections)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=600)
    args = parser.parse_args(argv)
    ds, eval_split = load_train_and_held_out(args.dataset)
    held_out = ds[eval_split]
    table = load_detection_table(args.proposals)
    encoders = tiny_encoders(0)                               # the validation report's default tiny towers
    train, test = featurize(ds["train"], encoders, detections=table), featurize(held_out, encoders, detections=table)
    chance = 100 * float((1 / _inputs(test)[2].sum(1).clamp(min=1).float()).mean())
    print(f"train {len(ds['train'])} rows, held out {len(held_out)} rows; picking at random finds the referent "
          f"{chance:.1f} % of the time")
    for name in ("true text", "shuffled text"):
        runs = []
        for seed in range(args.seeds):
            tr, te = ((train, test) if name == "true text" else
                      (shuffle_text_within_clips(train, seed), shuffle_text_within_clips(test, seed + 1)))
            runs.append(probe(tr, te, seed, args.epochs))
        mean = {k: np.mean([r[k] for r in runs]) for k in ("map_macro", "auroc_macro", "miou", "referent_picked")}
        sd = np.std([r["map_macro"] for r in runs], ddof=1) if len(runs) > 1 else 0.0
        print(f"{name:<14} mAP {mean['map_macro']:5.1f} +- {sd:3.1f}  AUROC {mean['auroc_macro']:5.1f}  "
              f"mIOU {mean['miou']:5.1f}  referent picked {mean['referent_picked']:5.1f} %")


if __name__ == "__main__":
    main()
