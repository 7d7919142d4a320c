"""Is `refava validate-dataset`'s verdict on the sample a property of the data or of one corpus draw?

For each corpus seed: `refava sample-corpus --seed S`, then the pipeline up to the packaged dataset (init, ingest,
annotation import and check, build-splits, package), then `refava validate-dataset` with the given encoder size.
Prints one line per corpus (RefAtomNet's mAP minus each control's, the seeds' spread of that difference, the
trained models' macro AUROC) and the range over corpora at the end.  Corpora already built under OUT are reused
(a corpus counts as built when its dataset folder has a manifest); reports are rewritten.

    python tools/validation_sweep.py OUT [--corpus-seeds 0-6] [--encoder-size tiny|small] [--epochs N] [--seeds N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REFAVA = [sys.executable, "-m", "refava"]


def run(args: list[str], cwd: Path, log: Path) -> None:
    with open(log, "a") as out:
        out.write(f"$ refava {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(REFAVA + args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode:
        sys.exit(f"`refava {' '.join(args)}` failed (exit {proc.returncode}) in {cwd}; see {log}")


def build(root: Path, seed: int) -> Path:
    """The packaged dataset of corpus ``seed`` under ``root`` (built when missing); returns the workspace."""
    ws, sample, log = root / "ws", root / "sample", root / "log.txt"
    if (ws / "refava" / "refava-manifest.json").is_file():
        return ws
    root.mkdir(parents=True, exist_ok=True)
    for stale in (ws, sample):
        if stale.exists():
            sys.exit(f"{stale} is left from an unfinished build: remove {root} and run again")
    run(["sample-corpus", str(sample), "--seed", str(seed)], root, log)
    run(["init", str(ws), "--from-sample", str(sample)], root, log)
    ann = sample / "annotations"
    for args in (["ingest"], ["annotate", "import", str(ann / "labelstudio_describe_export.json")],
                 ["annotate", "import", str(ann / "labelstudio_verify_export.json"), "--verify-map",
                  str(ann / "labelstudio_verify_tasks.json")], ["annotate", "check"],
                 ["build-splits"], ["package", "--no-progress"]):
        run(args, ws, log)
    return ws


def seeds_of(text: str) -> list[int]:
    """'0-6' or '0,2,5' -> the corpus seeds."""
    if "-" in text:
        lo, hi = text.split("-", 1)
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for the corpora, workspaces and reports")
    ap.add_argument("--corpus-seeds", default="0-6", help="corpus seeds: a range 0-6 or a list 0,2,5")
    ap.add_argument("--encoder-size", choices=["tiny", "small"], default="tiny")
    ap.add_argument("--epochs", type=int, help="validate-dataset --epochs (default: its own)")
    ap.add_argument("--seeds", type=int, help="validate-dataset --seeds, trainings per model (default: its own)")
    opts = ap.parse_args()
    gaps: dict[str, list[float]] = {}
    aurocs: list[float] = []
    corpora = seeds_of(opts.corpus_seeds)
    for seed in corpora:
        root = opts.out / f"corpus-{seed}"
        ws = build(root, seed)
        report_dir = root / f"validation-{opts.encoder_size}"
        args = ["validate-dataset", "--encoder-size", opts.encoder_size, "--out", str(report_dir)]
        for flag, value in (("--epochs", opts.epochs), ("--seeds", opts.seeds)):
            args += [flag, str(value)] if value else []
        run(args, ws, root / "log.txt")
        report = json.loads((report_dir / "report.json").read_text())
        cells = []
        for name, margin in report["margins"].items():
            gaps.setdefault(name, []).append(margin["difference"])
            cells.append(f"{name} {margin['difference']:+5.2f} (sd {margin['seed_sd']:4.2f})")
        trained = {k: report["results"][k]["auroc_macro"] for k in report["runs"]}
        aurocs += trained.values()
        print(f"corpus {seed}: {report['train_rows']} train / {report['eval_rows']} held out; RefAtomNet minus "
              + ", ".join(cells) + "; AUROC " + ", ".join(f"{k} {v:.1f}" for k, v in trained.items()), flush=True)
    print(f"over {len(corpora)} corpora ({opts.encoder_size} encoders), RefAtomNet's mAP minus:")
    for name, values in gaps.items():
        wins = sum(v > 0 for v in values)
        print(f"  {name:<14} {min(values):+5.2f} .. {max(values):+5.2f} (mean {sum(values) / len(values):+5.2f}; "
              f"ahead on {wins} of {len(values)})")
    print(f"  trained models' macro AUROC {min(aurocs):.1f} .. {max(aurocs):.1f}")
    print(f"reports: {opts.out}/corpus-*/validation-{opts.encoder_size}/report.md")


if __name__ == "__main__":
    main()
