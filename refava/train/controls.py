"""The controls a trained model is measured against: shuffled text, no text, the class prior."""
from __future__ import annotations


import numpy as np
import torch

from .. import metrics as M


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


def class_prior(train: dict, test: dict, groups=None) -> dict:
    """The control that predicts the training frequency of every class for everyone, and the mean box."""
    prior = train["labels"].mean(0, keepdim=True).expand_as(test["labels"]).numpy()
    box = train["boxes"].mean(0, keepdim=True).expand_as(test["boxes"]).numpy()
    return M.evaluate(test["labels"].numpy(), prior, box, test["boxes"].numpy(), groups=groups)


