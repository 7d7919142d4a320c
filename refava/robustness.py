"""``refava evaluate --robustness DIR``: a model's robustness to the corruption configurations of a packaged
dataset, in the paper's metrics.

``DIR`` holds the model's predictions (the scorer's JSON lines or csv) on the clean split, named ``clean`` or after
the split (``test.jsonl``), and on each corruption configuration of the split, named after it
(``test_fog_s3.jsonl``, ``test_rain_s2.csv``, ...).  Each file is scored by the official scorer against the rows of
its configuration; then, per metric (mAP and AUROC, macro and weighted; mIOU when boxes are predicted):

* mPC: the mean of the metric over every scored (type, severity) setting (Hendrycks and Dietterich's mean
  performance under corruption; presets such as ``fog_paper`` are reported apart and left out of it);
* rPC: mPC / the clean score (relative performance under corruption);
* per type: the mean over its severities, and the table of every setting.

Written: ``robustness.json``, ``robustness.md`` (tables per type and severity) and ``robustness.png`` (the
metric against severity, one line per type, clean dashed).  Configurations without a predictions file are named
in the report, never averaged in silently.
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import RefavaError

METRICS = ("map_macro", "map_weighted", "auroc_macro", "auroc_weighted", "miou")
SETTING = re.compile(r"^(?P<type>[a-z][a-z0-9_]*?)_s(?P<severity>[1-5])(?P<style>_drops)?$")
SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv")


class RobustnessError(RefavaError, ValueError):
    pass


def _find(folder: Path, stems: list[str]) -> Path | None:
    for stem in stems:
        for suffix in SUFFIXES:
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


def corruption_configs(manifest: dict, split_name: str, ours: str) -> dict[str, str]:
    """Configuration name -> setting (``fog_s3``) for the corruption configurations that hold ``split_name``."""
    out = {}
    for name, config in manifest["configs"].items():
        if split_name in config["splits"] and name.startswith(f"{ours}_"):
            out[name] = name[len(ours) + 1:]
    return dict(sorted(out.items()))


def evaluate_robustness(dataset: str | Path, predictions: str | Path, split: str = "test") -> dict:
    """Score the clean and corrupted predictions in ``predictions`` (see the module doc); returns the report."""
    from .package.format import config_split, read_manifest
    from .scorer import load_ground_truth, read_predictions, score

    folder, pred_dir = Path(dataset), Path(predictions)
    if not pred_dir.is_dir():
        raise RobustnessError(f"{pred_dir}: expected a folder of predictions files (clean and one per corruption "
                              f"configuration, named after it, e.g. test_fog_s3.jsonl)")
    manifest = read_manifest(folder, RobustnessError, "pass --dataset with the folder `refava package` wrote")
    split_name = config_split(manifest, folder, "default", split, RobustnessError)
    ours = {"validation": "val"}.get(split_name, split_name)
    clean_file = _find(pred_dir, ["clean", split_name, ours])
    if clean_file is None:
        raise RobustnessError(f"{pred_dir}: no predictions on the clean split: expected clean.jsonl (or "
                              f"{split_name}.jsonl / .csv)")
    gt = load_ground_truth(folder, split)
    clean = _headline(score(gt, read_predictions(clean_file, gt.names)))
    settings, presets, missing = {}, {}, []
    for name, setting in corruption_configs(manifest, split_name, ours).items():
        path = _find(pred_dir, [name])
        if path is None:
            missing.append(name)
            continue
        gt_c = load_ground_truth(folder, split, name)
        result = {**_headline(score(gt_c, read_predictions(path, gt_c.names))), "rows": len(gt_c.ids),
                  "predictions": str(path)}
        match = SETTING.match(setting)
        if match:
            kind = match["type"] + (match["style"] or "")
            settings[setting] = {**result, "type": kind, "severity": int(match["severity"])}
        else:
            presets[setting] = result
    if not settings and not presets:
        raise RobustnessError(f"{pred_dir}: no predictions for any corruption configuration of {split_name} "
                              f"(configurations: {', '.join(corruption_configs(manifest, split_name, ours)) or 'none'})")
    metrics = [m for m in METRICS if clean.get(m) is not None and all(s.get(m) is not None for s in settings.values())]
    summary = {}
    for m in metrics:
        values = [s[m] for s in settings.values()]
        mpc = sum(values) / len(values) if values else None
        summary[m] = {"clean": clean[m], "mPC": mpc,
                      "rPC": (mpc / clean[m]) if mpc is not None and clean[m] else None}
    per_type: dict[str, dict] = {}
    for s in settings.values():
        per_type.setdefault(s["type"], {})[s["severity"]] = {m: s[m] for m in metrics}
    return {"dataset": str(folder), "split": split_name, "clean": {**clean, "rows": len(gt.ids),
                                                                   "predictions": str(clean_file)},
            "settings": settings, "presets": presets, "not_scored": missing, "metrics": metrics,
            "summary": summary,
            "per_type": {t: {"severities": dict(sorted(v.items())),
                             "mean": {m: sum(x[m] for x in v.values()) / len(v) for m in metrics}}
                         for t, v in sorted(per_type.items())}}


def _headline(result: dict) -> dict:
    return {m: result.get(m) for m in METRICS}


def write_report(report: dict, out: str | Path) -> list[Path]:
    """robustness.json, .md and .png in ``out``."""
    from .fsutil import write_json_atomic, write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "robustness.json", report)
    write_text_atomic(out / "robustness.md", "\n".join(_lines(report)) + "\n")
    paths = [out / "robustness.json", out / "robustness.md"]
    if report["per_type"]:
        paths.append(_plot(report, out / "robustness.png"))
    return paths


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _lines(report: dict) -> list[str]:
    metrics = report["metrics"]
    lines = [f"# Robustness on {report['split']}", "",
             f"Clean: {report['clean']['rows']} rows; {len(report['settings'])} (type, severity) setting(s) scored"
             + (f"; not scored (no predictions file): {', '.join(report['not_scored'])}" if report["not_scored"]
                else "") + ".", "",
             "| metric | clean | mPC | rPC |", "|---|---:|---:|---:|"]
    for m in metrics:
        s = report["summary"][m]
        relative = "-" if s["rPC"] is None else f"{100 * s['rPC']:.1f} %"
        lines.append(f"| {m} | {_fmt(s['clean'])} | {_fmt(s['mPC'])} | {relative} |")
    lines += ["", "mPC: the mean over every scored (type, severity) setting; rPC: mPC / clean.", ""]
    for m in metrics:
        lines += [f"## {m} per type and severity", "", "| type | s1 | s2 | s3 | s4 | s5 | mean |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, entry in report["per_type"].items():
            cells = [_fmt(entry["severities"].get(k, {}).get(m)) for k in range(1, 6)]
            lines.append(f"| {kind} | " + " | ".join(cells) + f" | {_fmt(entry['mean'][m])} |")
        lines.append("")
    if report["presets"]:
        lines += ["## Presets (not in mPC)", "", "| setting | " + " | ".join(metrics) + " |",
                  "|---|" + "---:|" * len(metrics)]
        for name, r in report["presets"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(r[m]) for m in metrics) + " |")
    return lines


def _plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "map_macro" if "map_macro" in report["metrics"] else report["metrics"][0]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for kind, entry in report["per_type"].items():
        xs = sorted(entry["severities"])
        ax.plot(xs, [entry["severities"][k][metric] for k in xs], marker="o", label=kind)
    ax.axhline(report["summary"][metric]["clean"], color="k", linestyle="--", label="clean")
    ax.set_xlabel("severity")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_xticks(range(1, 6))
    ax.legend(fontsize=7)
    ax.set_title(f"{metric}: mPC {report['summary'][metric]['mPC']:.2f}, rPC "
                 f"{100 * (report['summary'][metric]['rPC'] or 0):.1f} %")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path

