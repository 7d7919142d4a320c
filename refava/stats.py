"""``refava stats``: figures of a RefAVA build as PNG files and one self-contained HTML page.

Figures: instances per split; people per clip (the paper's Fig. 2); action-class frequency per split; expression
length; the most frequent words per category (age, gender, clothing, appearance, position) and their
co-occurrence (a heat map in place of the paper's chord diagram); a gallery of keyframes with the box and the
expression drawn (the paper's Fig. 7).
"""
from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path

import numpy as np

from .summary import Summary

CATEGORIES = {
    "age": {"young", "old", "elderly", "aged", "child", "kid", "teenage", "teenager", "adult", "boy",
            "girl", "baby", "little", "older", "younger"},
    "gender": {"man", "woman", "boy", "girl", "male", "female", "lady", "gentleman", "guy", "men", "women"},
    "clothing": {"shirt", "coat", "jacket", "dress", "suit", "vest", "trousers", "pants", "jeans", "skirt", "hat",
                 "cap", "hoodie", "sweater", "tie", "uniform", "scarf", "shorts", "blouse", "wearing", "t"},
    "appearance": {"red", "blue", "green", "yellow", "white", "black", "orange", "purple", "grey", "gray", "brown",
                   "pink", "dark", "light", "blond", "blonde", "hair", "bald", "beard", "glasses", "bag", "long",
                   "short", "curly", "striped", "tall"},
    "position": {"left", "right", "middle", "center", "centre", "front", "back", "background", "foreground", "far",
                 "behind", "near", "next", "top", "bottom", "corner", "side"},
}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _bar(ax, labels, values, title, xlabel="", color="#4477aa"):
    ax.bar(range(len(values)), values, color=color)
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, rotation=0 if len(labels) < 8 else 60, ha="center" if len(labels) < 8 else "right",
                       fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    for i, v in enumerate(values):
        ax.text(i, v, str(v), ha="center", va="bottom", fontsize=7)


STATS_INPUTS = ("instances", "clips", "splits", "annotation_status")


def run(ws, *, gallery: int = 8) -> Summary:
    """``refava stats``: the figures (reports/stats/) and the page (reports/stats.html)."""
    lines: list[str] = []
    made = make_stats(ws, gallery=gallery, log=lines.append)
    return Summary("stats", lines, {"page": Path(made["html"])})


def make_stats(ws, out_dir: Path | None = None, *, gallery: int = 8, log=print) -> dict:
    """Write the figures and ``stats.html`` to ``out_dir`` (default: reports/stats/); return their paths."""
    import matplotlib

    matplotlib.use("Agg")

    from .fsutil import sha256_file, write_bytes_atomic, write_json_atomic, write_text_atomic

    out_dir = Path(out_dir or ws.reports_dir / "stats")
    out_dir.mkdir(parents=True, exist_ok=True)
    d = _read(ws)
    figures: dict[str, tuple[bytes, str]] = {}
    for draw in (_instances_per_split, _people_per_clip, _actions_per_split, _expression_length, _words):
        figures.update(draw(d))
    figures.update(_gallery(ws, d, gallery))
    paths = {}
    for name, (png, _) in figures.items():
        path = out_dir / f"{name}.png"
        write_bytes_atomic(path, png)
        paths[name] = str(path)
    html_path = ws.reports_dir / "stats.html"
    write_text_atomic(html_path, _page(ws, d, figures))
    # what the page was made from, for `refava status`
    write_json_atomic(out_dir / "inputs.json", {"stage": "stats", "inputs": {
        n: sha256_file(ws.table(n)) for n in STATS_INPUTS if ws.table(n).exists()}})
    log(f"stats: {len(figures)} figures in {out_dir}, report {html_path}")
    return {"html": str(html_path), "figures": paths}


class _Data:
    """What the figures are drawn from: the instances in the splits, the clips, the accepted expressions."""

    def __init__(self, instances, clips, split_of: dict, expression: dict, labels):
        self.clips, self.split_of, self.expression, self.labels = clips, split_of, expression, labels
        self.used = [i for i in instances if not split_of or i.instance_id in split_of]
        self.splits = sorted({split_of.get(i.instance_id, "all") for i in self.used},
                             key=lambda s: ["train", "val", "test"].index(s) if s in ("train", "val", "test") else 9)
        self.texts = [expression[i.instance_id] for i in self.used if i.instance_id in expression]


def _read(ws) -> _Data:
    from .ava import default_label_map
    from .records import Clips, Instances
    from .tables import read_table

    instances = list(Instances.from_parquet(ws.table("instances")))
    clips = Clips.from_parquet(ws.table("clips"))
    split_of = {}
    if ws.table("splits").exists():
        split_of = {r["instance_id"]: r["split"] for r in read_table("splits", ws.table("splits")).to_pylist()}
    expression = {}
    if ws.table("annotation_status").exists():
        expression = {r["instance_id"]: r["expression"] for r in
                      read_table("annotation_status", ws.table("annotation_status")).to_pylist()
                      if r["status"] == "accepted" and r["expression"]}
    return _Data(instances, clips, split_of, expression, default_label_map())


def _instances_per_split(d: _Data) -> dict:
    import matplotlib.pyplot as plt

    split_of, used, splits = d.split_of, d.used, d.splits
    figures = {}
    fig, ax = plt.subplots(figsize=(5, 3))
    counts = Counter(split_of.get(i.instance_id, "all") for i in used)
    _bar(ax, splits, [counts[s] for s in splits], "Instances per split")
    figures["instances_per_split"] = (_png(fig), "Referred persons (instances) in each split.")
    return figures


def _people_per_clip(d: _Data) -> dict:
    import matplotlib.pyplot as plt

    clips = d.clips
    figures = {}
    fig, ax = plt.subplots(figsize=(5, 3))
    people = Counter(c.n_people for c in clips)
    keys = sorted(people)
    _bar(ax, [str(k) for k in keys], [people[k] for k in keys], "People per clip", "people in the keyframe",
         color="#66aa55")
    ax.set_ylabel("clips")
    figures["people_per_clip"] = (_png(fig), "How many annotated people share a clip (the paper's Fig. 2).")
    return figures


def _actions_per_split(d: _Data) -> dict:
    import matplotlib.pyplot as plt

    split_of, used, splits, labels = d.split_of, d.used, d.splits, d.labels
    figures = {}
    freq = {s: Counter() for s in splits}
    for inst in used:
        for a in inst.action_ids:
            freq[split_of.get(inst.instance_id, "all")][a] += 1
    present = sorted({a for c in freq.values() for a in c}, key=lambda a: -sum(c[a] for c in freq.values()))
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(present)), 3.6))
    width = 0.8 / max(1, len(splits))
    for n, s in enumerate(splits):
        total = max(1, sum(1 for i in used if split_of.get(i.instance_id, "all") == s))
        ax.bar(np.arange(len(present)) + n * width, [freq[s][a] / total for a in present], width, label=s)
    ax.set_xticks(np.arange(len(present)) + width * (len(splits) - 1) / 2)
    ax.set_xticklabels([labels[a].name[:22] if a in labels else str(a) for a in present], rotation=60, ha="right",
                       fontsize=7)
    ax.set_ylabel("share of the split's instances")
    ax.set_title("Action classes per split")
    ax.legend(fontsize=8)
    figures["actions_per_split"] = (_png(fig), "How often each AVA action occurs, as a share of each split.")
    return figures


def _expression_length(d: _Data) -> dict:
    import matplotlib.pyplot as plt

    figures = {}
    words_per = [len(t.split()) for t in d.texts]
    fig, ax = plt.subplots(figsize=(5, 3))
    if words_per:
        ax.hist(words_per, bins=range(1, max(words_per) + 2), color="#aa7744", align="left", rwidth=0.85)
        ax.set_title(f"Expression length (mean {np.mean(words_per):.1f} words)")
    else:
        ax.set_title("Expression length (no accepted expressions yet)")
    ax.set_xlabel("words")
    ax.set_ylabel("expressions")
    figures["expression_length"] = (_png(fig), "Words per accepted referring expression.")
    return figures


def _words(d: _Data) -> dict:
    """Frequent words per category, and the co-occurrence of the categories' top words."""
    import matplotlib.pyplot as plt

    texts = d.texts
    figures = {}
    tokens = [[w for w in "".join(ch.lower() if ch.isalpha() else " " for ch in t).split()] for t in texts]
    fig, axes = plt.subplots(1, len(CATEGORIES), figsize=(3.2 * len(CATEGORIES), 3))
    top_words = []
    for ax, (cat, vocab) in zip(axes, CATEGORIES.items()):
        c = Counter(w for ws_ in tokens for w in ws_ if w in vocab).most_common(8)
        ax.barh([w for w, _ in c][::-1], [n for _, n in c][::-1], color="#7755aa")
        ax.set_title(cat)
        ax.tick_params(labelsize=8)
        top_words += [w for w, _ in c[:4]]
    figures["words_per_category"] = (_png(fig), "Most frequent words of each category in the expressions.")
    top_words = list(dict.fromkeys(top_words))
    m = np.zeros((len(top_words), len(top_words)), int)
    index = {w: n for n, w in enumerate(top_words)}
    for ws_ in tokens:
        present_words = sorted({index[w] for w in ws_ if w in index})
        for a in present_words:
            for b in present_words:
                if a != b:
                    m[a, b] += 1
    fig, ax = plt.subplots(figsize=(0.42 * len(top_words) + 2, 0.42 * len(top_words) + 1.5))
    im = ax.imshow(m, cmap="viridis")
    ax.set_xticks(range(len(top_words)))
    ax.set_yticks(range(len(top_words)))
    ax.set_xticklabels(top_words, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(top_words, fontsize=8)
    ax.set_title("Co-occurrence of frequent words")
    fig.colorbar(im, ax=ax, shrink=0.7)
    figures["word_cooccurrence"] = (_png(fig), "How often two frequent words appear in the same expression "
                                              "(a heat map in place of the paper's chord diagram).")
    return figures


def _gallery(ws, d: _Data, gallery: int) -> dict:
    """Keyframes with the referred person's box and expression, from the stored keyframes only."""
    import cv2
    import matplotlib.pyplot as plt

    from .framestore import DamagedFrameStoreError, read_keyframes
    from .video import decode_jpeg

    used, clips, expression = d.used, d.clips, d.expression
    figures = {}
    candidates = [i for i in used if i.instance_id in expression]
    # the gallery draws from stored keyframes only: instances whose frame store is missing are left out, and counted
    stored = [i for i in candidates if (ws.root / clips[i.clip_id].frames_file).exists()]
    gallery_missing = len(candidates) - len(stored)
    chosen = stored[:: max(1, len(stored) // gallery or 1)][:gallery]
    if chosen:
        cols = 4
        rows = (len(chosen) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows))
        for ax in np.atleast_1d(axes).ravel():
            ax.axis("off")
        for ax, inst in zip(np.atleast_1d(axes).ravel(), chosen):
            clip = clips[inst.clip_id]
            try:
                keyframe = read_keyframes(ws.root / clip.frames_file, {inst.clip_id}).get(inst.clip_id)
            except DamagedFrameStoreError:
                keyframe = None
            if keyframe is None:
                gallery_missing += 1
                continue
            img = decode_jpeg(keyframe)
            h, w = img.shape[:2]
            x1, y1, x2, y2 = inst.box_xyxy
            cv2.rectangle(img, (int(x1 * w), int(y1 * h)), (int(x2 * w), int(y2 * h)), (255, 40, 40), 2)
            ax.imshow(img)
            ax.set_title("\n".join(_wrap(expression[inst.instance_id], 40)), fontsize=8)
            ax.text(0, h + 12, inst.instance_id, fontsize=6, va="top")
        left_out = (f" {gallery_missing} instance(s) could not be drawn: their clip has no stored keyframe "
                    f"(frame store missing; see `refava status`)." if gallery_missing else "")
        figures["gallery"] = (_png(fig), "Keyframes with the referred person's box and expression (the paper's Fig. 7)."
                              + left_out)
    return figures


def _page(ws, d: _Data, figures: dict) -> str:
    used = d.used
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>RefAVA statistics</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}"
            "figure{margin:2em 0}</style></head><body>",
            f"<h1>RefAVA statistics</h1><p>{len(used)} instances in {len({i.clip_id for i in used})} clips of "
            f"{len({i.video_id for i in used})} movies; {len(d.texts)} accepted expressions. Workspace "
            f"{html.escape(str(ws.root))}.</p>"]
    for name, (png, caption) in figures.items():
        page.append(f"<figure><img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    page.append("</body></html>")
    return "\n".join(page)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])
