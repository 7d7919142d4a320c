"""Does the text pick out the person?  The first part of ``refava validate-dataset``'s verdict, one that stands on a
CPU with random encoders.

RefAtomNet can only single out the referent through its attention over the visual tokens; with random towers those
tokens carry no people, so its comparison with the controls cannot show whether the expressions carry the referent.
This probe asks directly: a small text-conditioned attention over the keyframe's person proposals (the location
stream's boxes) picks one box, the actions are classified from that box alone, and it is trained with BCE on the
actions plus MSE of the picked box against the referent's.  It runs with the true expressions and with the
expressions shuffled among the people of each clip, over several seeds, and reports mAP, AUROC, mIOU and how often
the picked box is the referent's proposal on the held-out movies, with the seeds' spread.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import metrics as M

PROBE_EPOCHS = 600


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


def probe(train: dict, test: dict, seed: int, epochs: int = PROBE_EPOCHS) -> dict:
    """Train one box picker on ``train`` features and evaluate it on ``test``: metrics and ``referent_picked`` (%)."""
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


def chance_of_picking(test: dict) -> float:
    """How often a box picked at random among the keyframe's proposals is the referent's (%)."""
    return 100 * float((1 / _inputs(test)[2].sum(1).clamp(min=1).float()).mean())


def referent_probe(train: dict, test: dict, *, seeds: int = 3, epochs: int = PROBE_EPOCHS) -> dict:
    """The probe with true and with clip-shuffled expressions over ``seeds`` seeds: per arm the mean of each metric
    and the seeds' sd, the chance of a random pick, and whether the data carries the referent: the true
    expressions pick the referent more often than both chance and the shuffled ones, beyond the seeds' spread."""
    from .controls import shuffle_text_within_clips

    arms: dict[str, dict] = {}
    for name in ("true_text", "shuffled_text"):
        runs = []
        for seed in range(seeds):
            tr, te = ((train, test) if name == "true_text" else
                      (shuffle_text_within_clips(train, seed), shuffle_text_within_clips(test, seed + 1)))
            runs.append(probe(tr, te, seed, epochs))
        arm = {k: float(np.mean([r[k] for r in runs])) for k in ("map_macro", "auroc_macro", "miou", "referent_picked")}
        for k in ("map_macro", "referent_picked"):
            arm[f"{k}_sd"] = float(np.std([r[k] for r in runs], ddof=1)) if seeds > 1 else 0.0
        arms[name] = arm
    chance = chance_of_picking(test)
    true, shuffled = arms["true_text"], arms["shuffled_text"]
    spread = math.hypot(true["referent_picked_sd"], shuffled["referent_picked_sd"])
    lead = true["referent_picked"] - max(shuffled["referent_picked"], chance)
    carries = lead > max(2 * spread, 5.0)
    if carries:
        verdict = (f"the expressions carry the referent: with them the probe picks the referent's box "
                   f"{true['referent_picked']:.1f} % of the time, against {shuffled['referent_picked']:.1f} % with "
                   f"shuffled expressions and {chance:.1f} % at random")
    else:
        verdict = (f"the expressions do not show that they carry the referent: the probe picks it "
                   f"{true['referent_picked']:.1f} % of the time with them, {shuffled['referent_picked']:.1f} % with "
                   f"shuffled ones, {chance:.1f} % at random (lead {lead:+.1f}, seeds' spread {spread:.1f})")
    return {"arms": arms, "chance_picked": chance, "seeds": seeds, "epochs": epochs, "lead": lead, "spread": spread,
            "carries_referent": bool(carries), "verdict": verdict}
