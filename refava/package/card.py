"""The dataset card (README.md) of a packaged RefAVA: YAML metadata that ``datasets`` reads, and the documentation."""
from __future__ import annotations

from .format import GROUPS, HF_SPLIT

RAVAR_BIBTEX = """@inproceedings{peng2024ravar,
  title     = {Referring Atomic Video Action Recognition},
  author    = {Peng, Kunyu and Fu, Jia and Yang, Kailun and Wen, Di and Chen, Yufan and Liu, Ruiping and
               Zheng, Junwei and Zhang, Jiaming and Sarfraz, M. Saquib and Stiefelhagen, Rainer and Roitberg, Alina},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2024}
}"""

AVA_BIBTEX = """@inproceedings{gu2018ava,
  title     = {{AVA}: A Video Dataset of Spatio-temporally Localized Atomic Visual Actions},
  author    = {Gu, Chunhui and Sun, Chen and Ross, David A. and Vondrick, Carl and Pantofaru, Caroline and Li, Yeqing and
               Vijayanarasimhan, Sudheendra and Toderici, George and Ricco, Susanna and Sukthankar, Rahul and
               Schmid, Cordelia and Malik, Jitendra},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2018}
}"""

FIELDS = [
    ("instance_id", "string", "`{video_id}___{keyframe_s:04d}___{person_id}`, the RAVAR authors' key"),
    ("video_id", "string", "AVA movie id"),
    ("keyframe_s", "int32", "keyframe second of the full movie (AVA timestamp)"),
    ("person_id", "int32", "AVA person id at this keyframe"),
    ("box", "list of 4 float32", "x1, y1, x2, y2 of the person on the keyframe, normalised to [0, 1]"),
    ("box_px", "list of 4 float32", "the same box in pixels of the stored `keyframe` image"),
    ("keyframe_width", "int32", "width of the stored `keyframe` image in pixels (`box_px = box * (w, h, w, h)`)"),
    ("keyframe_height", "int32", "height of the stored `keyframe` image in pixels"),
    ("actions", "list of ClassLabel (80 AVA names)", "the person's atomic actions at the keyframe (multi-label)"),
    ("labels", "list of 80 float32", "`actions` as a multi-hot vector in ClassLabel order (fixed length: collates)"),
    ("action_groups", "list of ClassLabel", "person movement / object manipulation / person interaction present"),
    ("expression", "string", "the referring expression: appearance, position, age, gender; no action words"),
    ("rephrasings", "list of string", "LLM rephrasings of the expression (`rephrased` configuration only)"),
    ("keyframe", "Image", "the keyframe (JPEG)"),
    ("frames", "list of Image", "frames sampled uniformly over [t - 1.5 s, t + 1.5 s), in time order"),
    ("keyframe_time_s", "float64", "movie time of the decoded frame stored as keyframe"),
    ("frame_times_s", "list of float64", "movie times of the sampled frames"),
    ("keyframe_index", "int32", "index in `frames` of the sampled frame nearest the keyframe in time (-1: none)"),
    ("annotators", "list of string", "who wrote the expression: a pseudonymous id per annotator (stable within "
                                      "this build's workspace) unless the card says otherwise"),
    ("verified", "bool or null", "a second annotator found this person from the text alone (null: not verified)"),
]


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _yaml(manifest: dict, full, bare, with_text=None) -> str:
    """The card's YAML block, produced with huggingface_hub's DatasetCardData and datasets' DatasetInfo."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    configs, infos = [], {}
    largest = 0
    for name, entry in manifest["configs"].items():
        files = [{"split": split, "path": f"data/{name}/{split}-*.parquet"} for split in entry["splits"]]
        configs.append({"config_name": name, "data_files": files, **({"default": True} if name == "default" else {})})
        splits = SplitDict()
        for split, shards in entry["splits"].items():
            splits.add(SplitInfo(name=split, num_bytes=sum(s["bytes"] for s in shards),
                                 num_examples=sum(s["rows"] for s in shards)))
        feats = with_text if entry.get("rephrasings") and with_text is not None else full if entry["pixels"] else bare
        infos[name] = DatasetInfo(features=feats, splits=splits,
                                  download_size=sum(s["bytes"] for v in entry["splits"].values() for s in v),
                                  config_name=name)
        largest = max(largest, sum(s["rows"] for v in entry["splits"].values() for s in v))
    card = DatasetCardData(
        pretty_name="RefAVA", license="other", license_name="refava-mixed",
        license_details="Annotations (AVA boxes and actions, referring expressions): CC BY 4.0. Frames are stills "
                        "from the AVA movies and belong to their rights holders; the annotations_only "
                        "configuration carries no pixels.",
        language=["en"], task_categories=["video-classification", "object-detection"],
        task_ids=["multi-label-image-classification"], size_categories=[_size_category(largest)],
        tags=["referring-expressions", "atomic-actions", "ava", "ravar", "video"], configs=configs)
    DatasetInfosDict(infos).to_dataset_card_data(card)
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)    # the C emitter: the class names make this YAML long
    return yaml.dump(card.to_dict(), Dumper=dumper, sort_keys=False, allow_unicode=True, width=120)


def rephrasing_counts(inputs) -> dict[str, dict]:
    """Per split (dataset names): rows, rows never sent for rephrasing, and how many rows hold 0, 1, 2, ...
    accepted rephrasings (of those sent); slots (requested rephrasings) and how many were filled; model outputs
    checked (every attempt) and accepted.  From the rephrasings table, as packaged."""
    by_instance: dict[str, list[dict]] = {}
    for r in inputs.rephrase_log:
        by_instance.setdefault(r["instance_id"], []).append(r)
    out = {}
    for ours, split in HF_SPLIT.items():
        ids = [i.instance_id for i in inputs.instances.get(ours, [])]
        if not ids:
            continue
        sent = [by_instance[i] for i in ids if i in by_instance]
        width = max((len(r) for r in sent), default=0)
        held = [sum(x["status"] == "ok" for x in r) for r in sent]
        out[split] = {"rows": len(ids), "not_sent": len(ids) - len(sent),
                      "with": [held.count(k) for k in range(width + 1)],
                      "slots": sum(len(r) for r in sent), "filled": sum(held),
                      "outputs": sum(x["attempts"] for r in sent for x in r), "accepted": sum(held)}
    return out


def rephrasing_lines(inputs) -> list[str]:
    """The card's Rephrasings section: what this build holds per split, and which model and template wrote it."""
    counts = rephrasing_counts(inputs)
    width = max((len(c["with"]) for c in counts.values()), default=1)
    lines = ["", "## Rephrasings", "",
             "The `rephrased` configuration adds `rephrasings` (a list per row, in request order) to the splits "
             "that were rephrased. A rephrasing slot stays empty when no model output passed the checks.", "",
             "| split | rows | not rephrased | " + " | ".join(f"{k} rephrasing{'s' if k != 1 else ''}"
                                                             for k in range(width)) + " | slots filled | outputs "
             "accepted |", "|---|---:|---:|" + "---:|" * width + "---:|---:|"]
    for split, c in counts.items():
        held = c["with"] + [0] * (width - len(c["with"]))
        filled = f"{c['filled']} / {c['slots']} ({100 * c['filled'] / c['slots']:.1f} %)" if c["slots"] else "-"
        accepted = (f"{c['accepted']} / {c['outputs']} ({100 * c['accepted'] / c['outputs']:.1f} %)"
                    if c["outputs"] else "-")
        lines.append(f"| {split} | {c['rows']} | {c['not_sent']} | " + " | ".join(
            str(n) if c["slots"] else "-" for n in held) + f" | {filled} | {accepted} |")
    writers = sorted({(r["backend"], r["model"], r["template_id"], r["template_sha256"][:12], r["temperature"])
                      for r in inputs.rephrase_log})
    lines += ["", "Written by " + "; ".join(
        f"`{model}` (backend {backend}) with prompt template `{template}` (sha256 `{sha}`), temperature {t:g}"
        for backend, model, template, sha, t in writers) + ". Outputs that changed or lost the gender, age, "
        "position or colour words, added clothing, actions or positions, read badly (\"on the middle\", \"a old "
        "woman\") or fitted another person of the clip better were rejected and sampled again; \"outputs accepted\" "
        "counts every sample checked."]
    return lines


def dataset_card(manifest: dict, inputs, full, bare, with_text=None) -> str:
    """README.md of a packaged dataset: YAML metadata, then what it is, fields, how it was built, counts, configs."""
    configs = manifest["configs"]
    default = configs["default"]["splits"]
    count = {split: sum(s["rows"] for s in shards) for split, shards in default.items()}
    movies = {split: len({i.video_id for i in inputs.instances.get(ours, [])})
              for ours, split in HF_SPLIT.items() if split in default}
    lines = ["---", _yaml(manifest, full, bare, with_text).rstrip(), "---", "", "# RefAVA", ""]
    lines += [
        "RefAVA pairs people in AVA movies with **referring expressions**, for Referring Atomic Video Action "
        "Recognition (RAVAR, ECCV 2024): given a 3-second clip and a sentence such as *\"the man in a grey vest on "
        "the left\"*, name that person's atomic actions (80 AVA classes, multi-label) and box them on the keyframe.",
        "",
        f"This folder was built with refava {manifest['refava_version']} from workspace tables with these sha256 "
        "(also in `refava-manifest.json`): " + ", ".join(f"{k} `{v[:12]}`" for k, v in sorted(manifest["inputs"].items()))
        + ".",
        "",
        "```python",
        "from datasets import load_dataset",
        "ds = load_dataset(\"refava\")                        # from the folder holding this one; or load_dataset(PATH)",
        "ds = load_dataset(\"refava\", \"annotations_only\")   # no pixels",
        "stream = load_dataset(\"refava\", split=\"test\", streaming=True)   # rows as they are read, no cache",
        "print(next(iter(stream))[\"expression\"])",
        "```",
        "",
        "### With PyTorch",
        "",
        "PyTorch's default collate stacks fixed-size columns: `labels` (the 80-class multi-hot form of `actions`), "
        "`box`, `box_px`, `keyframe_index`; strings come as lists. Keyframes differ in size between movies, so "
        "images need a transform (or refava's loader, which decodes a batch's JPEGs once per clip and resizes):",
        "",
        "```python",
        "import torch",
        "from datasets import load_dataset",
        "train = load_dataset(\"refava\", split=\"train\")",
        "loader = torch.utils.data.DataLoader(",
        "    train.with_format(\"torch\", columns=[\"labels\", \"box\", \"keyframe_index\", \"expression\"]),",
        "    batch_size=4, shuffle=True)",
        "batch = next(iter(loader))            # batch[\"labels\"]: float32 (4, 80)",
        "",
        "from refava.loader import RefAVAFrames, collate   # pip install refava: frames as uint8 tensors",
        "frames = RefAVAFrames(\"refava\", split=\"train\", size=224)",
        "loader = torch.utils.data.DataLoader(frames, batch_size=32, collate_fn=collate)",
        "```",
        "",
        "## Splits",
        "",
        "Splits are by movie: no movie is in two splits, and every action class's share in each split is kept close "
        "to the split's share of instances.",
        "",
        "| split | instances | movies |",
        "|---|---:|---:|",
    ]
    lines += [f"| {split} | {count[split]:,} | {movies.get(split, 0)} |" for split in default]
    lines += ["", "## Configurations", "", "| configuration | splits (rows) | what |", "|---|---|---|"]
    for name, entry in configs.items():
        rows = ", ".join(f"{s} {sum(x['rows'] for x in v):,}" for s, v in entry["splits"].items())
        lines.append(f"| `{name}` | {rows} | {entry['description']} |")
    if "rephrased" not in configs:
        lines += ["", "No `rephrased` configuration: this build has no rephrasings yet (`refava rephrase --test`)."]
    else:
        lines += rephrasing_lines(inputs)
    corrupted = [n for n in configs if n not in ("default", "annotations_only", "rephrased")]
    lines += ["", "Corruption configurations (`<split>_<type>_s<severity>`, or `_paper` / `_authors_code` for the two "
              "presets: the paper's appendix, and the authors' code literally) hold the same rows as the clean split, restricted to the clips that were corrupted, with "
              "corrupted pixels; their parameters are in the table above and in `refava-manifest.json`. "
              + (f"This build has {len(corrupted)}." if corrupted else "This build has none.")]
    lines += ["", "## Fields", "", "| field | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {t} | {m} |" for n, t, m in FIELDS]
    lines += ["", "Action names (ClassLabel order = AVA ids 1..80): " +
              "; ".join(f"{i} {n}" for i, n in enumerate(inputs.label_names)) + ".",
              "", "Action groups: " + ", ".join(f"{i} {g.replace('_', ' ')}" for i, g in enumerate(GROUPS)) + "."]
    lines += [
        "", "## How it was built", "",
        "With the refava toolkit, from the AVA movies and annotation files:",
        "",
        "1. `refava ingest`: AVA ground truth grouped per (movie, keyframe, person); for every keyframe t the clip "
        "[t - 1.5 s, t + 1.5 s) is decoded once and the frame nearest each target time is kept (keyframe plus "
        "frames sampled uniformly over the 90-frame grid), stored as JPEG.",
        "2. Referring expressions written in Label Studio by one annotator per person and cross-checked by a second "
        "one who had to find the person from the text alone; `refava annotate check` keeps expressions that are "
        "unique within their clip, free of action words and verified.",
        "3. `refava build-splits`: movie-level, class-balanced splits.",
        "4. `refava rephrase` (optional): LLM rephrasings of the expressions of the chosen splits, each checked to "
        "keep gender, age, position and colour words and to read well (see Rephrasings for what this build holds).",
        "5. `refava corrupt` (optional): Gaussian and shot noise, fog and rain (ImageNet-C / Yi et al. formulas), "
        "brightness, contrast, saturate and motion blur (the RAVAR authors' set), H.264 quality, bitrate and bit "
        "errors (Yi et al.) and frame rate, freeze, jumble, box jumble and reversal (Yi et al., Schiappa et al.), "
        "seeded per clip.",
        "6. `refava package`: this folder. `refava package --verify DIR` recomputes every shard's checksum and row "
        "count and checks every row against the schema.",
        "",
        ("**Annotators** are named by pseudonymous ids (`annotator-` and 10 hex digits, a keyed hash of the account "
         "with a secret kept in the building workspace): the same person has the same id throughout this dataset, and "
         "no email or account name is in it." if manifest.get("annotators", "pseudonyms") == "pseudonyms" else
         "**Annotators** are named by their Label Studio account emails (packaged with `--annotator-emails`): this "
         "is personal data; share the dataset only as the annotators agreed."),
        "",
        "**Rebuilding the frames** of `annotations_only`: get the AVA movies (`refava download`), run "
        "`refava ingest` with the same AVA files and clip settings, then `refava package`; instance ids, keyframe "
        "seconds and `frame_times_s` identify every frame.",
        "",
        "## Known limitations",
        "",
        "- Expressions describe the person on the keyframe; a person who moves during the clip may no longer match "
        "position words at its ends.",
        "- AVA labels only people with annotated actions; others in the frame are unlabelled and may resemble the "
        "referent.",
        "- Frames are JPEG re-encodings of decoded movie frames (quality in the workspace's refava.toml), not the "
        "original stream.",
        "- Rephrasings are model output; refava rejects those that change gender, position or colour words, but "
        "subtler drift is possible.",
        "",
        "## License",
        "",
        "- Annotations (AVA boxes and action labels, referring expressions, rephrasings): "
        "[CC BY 4.0](https://creativecommons.org/licenses/by/4.0/), as the AVA annotations they extend "
        "([AVA dataset](https://research.google.com/ava/download.html)).",
        "- Frames (`keyframe`, `frames` and every corruption configuration) are stills from the AVA movies and belong "
        "to their rights holders; use them for research only, under the terms of the AVA release. The "
        "`annotations_only` configuration carries no pixels and can be shared under CC BY 4.0 alone.",
        "- The RefAVA expressions follow the RAVAR paper (Peng et al., ECCV 2024); please cite both works below.",
        "",
        "## Citation",
        "",
        "```bibtex", RAVAR_BIBTEX, "", AVA_BIBTEX, "```", "",
    ]
    if manifest.get("skipped"):
        lines[-1:-1] = ["Rows left out when packaging: " + "; ".join(f"{k}: {v}" for k, v in
                                                                     sorted(manifest["skipped"].items())), ""]
    return "\n".join(lines)
