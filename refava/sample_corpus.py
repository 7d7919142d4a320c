"""``refava sample-corpus``: a small AVA-format corpus that every refava stage can run on.

Short movies (real H.264 / VP9 files in .mp4, .mkv and .webm, at 30, 29.97 and 25 fps) show stick-and-block
people whose looks can be put into words (age and gender by size and hair, shirt and trouser colours, hats,
bags) and whose motion follows an AVA action (stand, walk, run/jog, sit, bend/bow, dance, jump/leap, lie/sleep,
hand wave, carry/hold).  Boxes are the drawn figure's extent at each keyframe, so the ground truth is exact.
Alongside: the ground-truth csv, the 80-class label map (``label {}`` pbtxt), an excluded-timestamps csv, a
file-name list, a dense-proposals pickle, a checksum list, and a Label Studio export of referring expressions
from two annotators (describe and verify stages), with a few deliberate flaws for the checks to find.
"""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .ava import default_label_map, save_label_map_pbtxt
from .fsutil import sha256_file, write_json_atomic, write_text_atomic
from .records import clip_id_of, instance_id_of

WIDTH, HEIGHT = 320, 240
COLOURS = {  # name -> RGB
    "red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 150, 50), "yellow": (230, 210, 40),
    "white": (240, 240, 240), "black": (25, 25, 25), "orange": (240, 130, 20), "purple": (120, 40, 160),
    "grey": (128, 128, 128), "brown": (110, 70, 30),
}
SHIRTS = ["red", "blue", "green", "yellow", "white", "orange", "purple", "black"]
TROUSERS = ["black", "blue", "brown", "grey"]
SKIN = (224, 172, 130)
ACTIONS = {  # name -> AVA action id
    "stand": 12, "walk": 14, "run": 10, "sit": 11, "bend": 1, "dance": 4, "jump": 7, "lie": 8,
    "wave": 69, "carry": 17, "talk": 79, "watch": 80,
}
MAIN_ACTIONS = ["stand", "walk", "run", "sit", "bend", "dance", "jump", "lie"]
MOVIES = [  # (video id, extension, fps)
    ("-smpl00a1Qx", ".mp4", Fraction(30)), ("_smpl00b2Rw", ".mkv", Fraction(30)),
    ("smpl00c3-Sv", ".webm", Fraction(25)), ("smpl00d4Tu_", ".mp4", Fraction(30000, 1001)),
    ("smpl00e5Ut2", ".mkv", Fraction(25)), ("smpl00f6Vs3", ".webm", Fraction(30)),
    ("smpl00g7Wr4", ".mp4", Fraction(30)), ("smpl00h8Xq5", ".mkv", Fraction(30000, 1001)),
]


@dataclass
class Person:
    person_id: int
    age: str          # child, adult, elderly
    gender: str       # man, woman
    shirt: str
    trousers: str
    hat: bool
    bag: bool
    home_x: float     # lane centre, fraction of width
    schedule: list[tuple[int, str]] = field(default_factory=list)  # (start second, action)
    extras: dict[int, list[str]] = field(default_factory=dict)      # second -> secondary actions

    @property
    def noun(self) -> str:
        return {("child", "man"): "boy", ("child", "woman"): "girl", ("adult", "man"): "man",
                ("adult", "woman"): "woman", ("elderly", "man"): "old man", ("elderly", "woman"): "old woman"}[(self.age, self.gender)]

    @property
    def scale(self) -> float:
        return {"child": 0.62, "adult": 1.0, "elderly": 0.95}[self.age]

    def action_at(self, t: float) -> str:
        current = self.schedule[0][1]
        for start, action in self.schedule:
            if start <= t:
                current = action
        return current

    def phase_start(self, t: float) -> float:
        start_of = 0.0
        for start, _ in self.schedule:
            if start <= t:
                start_of = start
        return start_of


def _pose(person: Person, t: float) -> dict:
    """Where the figure is and how it is posed at time ``t`` (seconds)."""
    action = person.action_at(t)
    since = t - person.phase_start(t)
    s = person.scale
    x = person.home_x * WIDTH
    ground = HEIGHT * 0.9
    pose = {"x": x, "ground": ground, "lean": 0.0, "legs": 0.0, "arm": 0.2, "lift": 0.0, "sit": False, "lie": False,
            "height": 150 * s}
    if action == "walk":
        x += 18 * math.sin(since * 0.9) * 1.5
        pose["legs"] = math.sin(since * 2 * math.pi * 1.2) * 0.5
    elif action == "run":
        x += 30 * math.sin(since * 1.6)
        pose["legs"] = math.sin(since * 2 * math.pi * 2.5) * 0.9
        pose["lean"] = 0.25
    elif action == "sit":
        pose["sit"] = True
    elif action == "bend":
        pose["lean"] = 0.9
    elif action == "dance":
        x += 10 * math.sin(since * 2 * math.pi * 1.5)
        pose["arm"] = 1.4 + 0.6 * math.sin(since * 2 * math.pi * 1.5)
        pose["legs"] = 0.3 * math.sin(since * 2 * math.pi * 1.5)
    elif action == "jump":
        pose["lift"] = 28 * s * abs(math.sin(since * math.pi * 1.4))
    elif action == "lie":
        pose["lie"] = True
    if "wave" in _extras_at(person, t):
        pose["arm"] = 2.2 + 0.5 * math.sin(t * 2 * math.pi * 2)
    pose["x"] = min(max(x, 30), WIDTH - 30)
    return pose


def _extras_at(person: Person, t: float) -> list[str]:
    return person.extras.get(int(round(t)), person.extras.get(int(math.floor(t)), []))


def _segments(person: Person, t: float):
    """Line segments (x1, y1, x2, y2, colour, thickness) and circles of the figure; also its bounding box."""
    p = _pose(person, t)
    s = person.scale
    h = p["height"]
    skin, shirt, trousers = SKIN, COLOURS[person.shirt], COLOURS[person.trousers]
    hair = COLOURS["grey"] if person.age == "elderly" else COLOURS["brown"] if person.gender == "woman" else COLOURS["black"]
    shapes: list[tuple] = []
    if p["lie"]:
        y = p["ground"] - 10 * s
        x0 = p["x"] - h * 0.45
        shapes.append(("line", x0 + h * 0.18, y, x0 + h * 0.55, y, shirt, int(16 * s)))
        shapes.append(("line", x0 + h * 0.55, y, x0 + h * 0.95, y, trousers, int(10 * s)))
        shapes.append(("circle", x0 + h * 0.08, y - 2, 11 * s, skin))
        shapes.append(("circle", x0 + h * 0.06, y - 8 * s, 9 * s, hair))
    else:
        foot = p["ground"] - p["lift"]
        leg_len = 0.45 * h
        hip_y = foot - (leg_len * 0.55 if p["sit"] else leg_len)
        lean = p["lean"]
        torso = 0.35 * h
        neck_x = p["x"] + math.sin(lean) * torso
        neck_y = hip_y - math.cos(lean) * torso
        if p["sit"]:
            shapes.append(("rect", p["x"] - 22 * s, hip_y + 2, p["x"] + 18 * s, foot, COLOURS["brown"]))
            shapes.append(("line", p["x"], hip_y, p["x"] + leg_len * 0.5, hip_y, trousers, int(9 * s)))
            shapes.append(("line", p["x"] + leg_len * 0.5, hip_y, p["x"] + leg_len * 0.5, foot, trousers, int(8 * s)))
        else:
            for sign in (-1, 1):
                swing = sign * p["legs"]
                shapes.append(("line", p["x"], hip_y, p["x"] + math.sin(swing) * leg_len, hip_y + math.cos(swing) * leg_len,
                               trousers, int(9 * s)))
        shapes.append(("line", p["x"], hip_y, neck_x, neck_y, shirt, int(20 * s)))
        arm_len = 0.3 * h
        for sign, raise_ in ((-1, p["arm"]), (1, p["arm"] if p["arm"] < 2 else 0.2)):
            ax = neck_x + sign * math.sin(raise_) * arm_len
            ay = neck_y + 4 + math.cos(raise_) * arm_len
            shapes.append(("line", neck_x, neck_y + 4, ax, ay, shirt, int(6 * s)))
        if "carry" in _extras_at(person, t):
            shapes.append(("rect", neck_x + 4, neck_y + arm_len * 0.6, neck_x + 22 * s, neck_y + arm_len * 0.6 + 16 * s,
                           COLOURS["brown"]))
        head_r = 12 * s
        head_x, head_y = neck_x + math.sin(lean) * head_r, neck_y - math.cos(lean) * head_r - 2
        if person.gender == "woman":
            shapes.append(("rect", head_x - head_r, head_y - 2, head_x + head_r, head_y + head_r * 1.8, hair))
        shapes.append(("circle", head_x, head_y, head_r, skin))
        shapes.append(("circle", head_x, head_y - head_r * 0.7, head_r * 0.75, hair))
        if person.hat:
            shapes.append(("rect", head_x - head_r * 1.2, head_y - head_r * 1.5, head_x + head_r * 1.2, head_y - head_r * 0.8,
                           COLOURS["black"]))
        if person.bag:
            shapes.append(("rect", p["x"] - 16 * s, hip_y - torso * 0.4, p["x"] - 6 * s, hip_y - torso * 0.05, COLOURS["brown"]))
    xs, ys = [], []
    for shape in shapes:
        if shape[0] == "line":
            _, x1, y1, x2, y2, _, th = shape
            xs += [x1 - th / 2, x2 + th / 2, x1 + th / 2, x2 - th / 2]
            ys += [y1 - th / 2, y2 + th / 2, y1 + th / 2, y2 - th / 2]
        elif shape[0] == "circle":
            _, cx, cy, r, _ = shape
            xs += [cx - r, cx + r]
            ys += [cy - r, cy + r]
        else:
            _, x1, y1, x2, y2, _ = shape
            xs += [x1, x2]
            ys += [y1, y2]
    box = (max(0.0, min(xs)) / WIDTH, max(0.0, min(ys)) / HEIGHT, min(WIDTH, max(xs)) / WIDTH, min(HEIGHT, max(ys)) / HEIGHT)
    return shapes, box


def _draw(img: np.ndarray, shapes) -> None:
    import cv2

    for shape in shapes:
        if shape[0] == "line":
            _, x1, y1, x2, y2, colour, th = shape
            cv2.line(img, (int(x1), int(y1)), (int(x2), int(y2)), colour, max(1, th), cv2.LINE_AA)
        elif shape[0] == "circle":
            _, cx, cy, r, colour = shape
            cv2.circle(img, (int(cx), int(cy)), max(1, int(r)), colour, -1, cv2.LINE_AA)
        else:
            _, x1, y1, x2, y2, colour = shape
            cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), colour, -1)


def _background(rng: np.random.Generator) -> np.ndarray:
    wall = rng.integers(150, 220, size=3)
    floor = rng.integers(70, 130, size=3)
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    horizon = int(HEIGHT * 0.62)
    ramp = np.linspace(0.85, 1.0, horizon)[:, None, None]
    img[:horizon] = (wall[None, None, :] * ramp).astype(np.uint8)
    img[horizon:] = floor.astype(np.uint8)
    for _ in range(3):  # a few pieces of furniture-like blocks for texture
        x = int(rng.integers(0, WIDTH - 40))
        w = int(rng.integers(20, 60))
        y = int(rng.integers(20, horizon - 40))
        img[y:y + 30, x:x + w] = rng.integers(60, 200, size=3).astype(np.uint8)
    return img


def _make_people(rng: np.random.Generator, n: int, seconds: int) -> list[Person]:
    shirts = rng.permutation(SHIRTS)[:n]
    lanes = np.linspace(0.16, 0.84, n) if n > 1 else np.array([rng.uniform(0.3, 0.7)])
    people = []
    for i in range(n):
        age = str(rng.choice(["child", "adult", "adult", "adult", "elderly"]))
        person = Person(i, age, str(rng.choice(["man", "woman"])), str(shirts[i]), str(rng.choice(TROUSERS)),
                        bool(rng.random() < 0.3), bool(rng.random() < 0.25), float(lanes[i]))
        t = 0
        while t < seconds:
            person.schedule.append((t, str(rng.choice(MAIN_ACTIONS, p=[.22, .18, .08, .14, .1, .1, .1, .08]))))
            t += int(rng.integers(3, 6))
        for second in range(seconds):
            extras = []
            if person.action_at(second) in ("stand", "walk") and rng.random() < 0.25:
                extras.append("carry")
            if person.action_at(second) in ("stand", "sit") and rng.random() < 0.2:
                extras.append("wave")
            if n > 1 and person.action_at(second) in ("stand", "sit") and rng.random() < 0.35:
                extras.append("talk")
                extras.append("watch")
            if extras:
                person.extras[second] = extras
        people.append(person)
    return people


def _position_words(box, boxes) -> str:
    """Where ``box`` is among ``boxes`` (which include it), from left to right by box centre."""
    cx = (box[0] + box[2]) / 2
    centres = sorted((b[0] + b[2]) / 2 for b in boxes)
    rank = min(range(len(centres)), key=lambda i: abs(centres[i] - cx))
    if len(centres) == 1:
        return "in the middle" if 0.35 < cx < 0.65 else ("on the left" if cx <= 0.35 else "on the right")
    if rank == 0:
        return "on the far left" if len(centres) > 2 else "on the left"
    if rank == len(centres) - 1:
        return "on the far right" if len(centres) > 2 else "on the right"
    if len(centres) == 4:
        return "second from the left" if rank == 1 else "second from the right"
    return "in the middle"


def describe(person: Person, box, boxes, *, variant: int = 0) -> str:
    """A referring expression from the figure's looks and place (never its action)."""
    where = _position_words(box, boxes)
    extra = " with a hat" if person.hat else " with a bag" if person.bag else ""
    if variant == 0:
        return f"the {person.noun} in a {person.shirt} shirt{extra} {where}"
    return f"{where.replace('on the', 'the').replace('in the', 'the')} {person.noun} wearing {person.shirt} and {person.trousers} trousers"


def make_sample_corpus(out: str | Path, *, seconds: int = 14, seed: int = 0, log=print) -> dict:
    """Write the sample corpus into ``out`` (movies/ and annotations/); return a summary with counts and paths.

    >>> summary = make_sample_corpus("sample")   # doctest: +SKIP
    >>> summary["instances"] > 100
    True
    """
    from .video import VideoWriter

    out = Path(out)
    movies_dir, ann_dir = out / "movies", out / "annotations"
    movies_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    gt_rows: list[str] = []
    proposals: dict[str, np.ndarray] = {}
    truth: list[dict] = []
    people_counts = [3, 2, 4, 1, 3, 2, 4, 3]
    for (video_id, ext, fps), n_people in zip(MOVIES, people_counts):
        people = _make_people(rng, n_people, seconds + 1)
        background = _background(rng)
        n_frames = int(seconds * fps)
        path = movies_dir / f"{video_id}{ext}"
        # H.264 lossless (crf 0): x264 encodes the same frames differently from run to run on a loaded machine
        # (seen here, with one thread too), so only lossless coding gives every run the same decoded pixels
        with VideoWriter(path, width=WIDTH, height=HEIGHT, fps=fps, crf=0 if ext != ".webm" else 20) as writer:
            for i in range(n_frames):
                t = float(i / fps)
                img = background.copy()
                for person in sorted(people, key=lambda p: _pose(p, t)["ground"]):
                    _draw(img, _segments(person, t)[0])
                writer.write(img)
        for timestamp in range(2, seconds - 1):
            # the keyframe: the frame nearest to t (what ingest will pick), so the box matches the pixels
            t_frame = float(round(timestamp * fps) / fps)
            boxes = {p.person_id: _segments(p, t_frame)[1] for p in people}
            props = []
            for person in people:
                box = tuple(round(v, 3) for v in boxes[person.person_id])
                actions = [ACTIONS[person.action_at(t_frame)]] + [ACTIONS[e] for e in _extras_at(person, t_frame)]
                for action_id in sorted(set(actions)):
                    gt_rows.append(f"{video_id},{timestamp:04d},{box[0]:.3f},{box[1]:.3f},{box[2]:.3f},{box[3]:.3f},"
                                   f"{action_id},{person.person_id}")
                jitter = rng.normal(0, 0.01, 4)
                props.append([*np.clip(np.array(box) + jitter, 0, 1), float(rng.uniform(0.8, 1.0))])
                truth.append({"instance_id": instance_id_of(video_id, timestamp, person.person_id),
                              "clip_id": clip_id_of(video_id, timestamp), "video_id": video_id,
                              "timestamp": timestamp, "person_id": person.person_id, "box": list(box),
                              "noun": person.noun, "shirt": person.shirt, "trousers": person.trousers,
                              "hat": person.hat, "bag": person.bag,
                              "expression": describe(person, box, list(boxes.values())),
                              "expression_alt": describe(person, box, list(boxes.values()), variant=1)})
            proposals[f"{video_id},{timestamp:04d}"] = np.array(props, dtype=np.float64)
        log(f"  movie {path.name}: {n_frames} frames at {float(fps):.2f} fps, {n_people} people")

    write_text_atomic(ann_dir / "ava_sample_v2.2.csv", "\n".join(gt_rows) + "\n")
    save_label_map_pbtxt(default_label_map(), ann_dir / "ava_action_list_v2.2.pbtxt")
    excluded = [f"{MOVIES[1][0]},{seconds - 3:04d}", f"{MOVIES[4][0]},0002"]
    excluded_keys = {(v, int(t)) for v, t in (e.split(",") for e in excluded)}
    truth = [t for t in truth if (t["video_id"], t["timestamp"]) not in excluded_keys]
    write_text_atomic(ann_dir / "ava_excluded_timestamps_sample.csv", "\n".join(excluded) + "\n")
    names = sorted(p.name for p in movies_dir.iterdir() if not p.name.startswith("."))
    write_text_atomic(ann_dir / "ava_file_names_sample.txt", "\n".join(names) + "\n")
    write_text_atomic(ann_dir / "movies.sha256", "".join(f"{sha256_file(movies_dir / n)}  {n}\n" for n in names))
    with open(ann_dir / "ava_dense_proposals_sample.pkl", "wb") as fh:
        pickle.dump(proposals, fh, protocol=4)
    write_json_atomic(ann_dir / "sample_truth.json", truth)
    from .sample_annotations import make_label_studio_exports

    exports = make_label_studio_exports(truth, ann_dir, seed=seed)
    summary = {"out": str(out), "movies": len(MOVIES), "clips": len({t["clip_id"] for t in truth}),
               "instances": len(truth), "gt_rows": len(gt_rows), "excluded": len(excluded), **exports}
    log(f"sample corpus: {summary['movies']} movies, {summary['clips']} clips, {summary['instances']} people "
        f"-> {out}")
    return summary
