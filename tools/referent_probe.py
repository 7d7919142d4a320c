"""Does the text pick out the person?  The referent probe of ``refava validate-dataset`` (``refava.train.probe``),
run on its own on a packaged dataset and a proposals file.

    python tools/referent_probe.py demo/ws/refava demo/sample/annotations/ava_dense_proposals_sample.pkl
"""
from __future__ import annotations

import argparse

from refava.train.detections import load_detection_table
from refava.train.encoders import tiny_encoders
from refava.train.loop import featurize
from refava.train.validation import load_train_and_held_out
from refava.train.probe import PROBE_EPOCHS, referent_probe


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="packaged RefAVA folder (refava package)")
    parser.add_argument("proposals", help="dense-proposals pickle or detections csv (as validate-dataset --detections)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=PROBE_EPOCHS)
    args = parser.parse_args(argv)
    ds, eval_split = load_train_and_held_out(args.dataset)
    held_out = ds[eval_split]
    table = load_detection_table(args.proposals)
    encoders = tiny_encoders(0)                               # the validation report's default tiny towers
    train, test = featurize(ds["train"], encoders, detections=table), featurize(held_out, encoders, detections=table)
    result = referent_probe(train, test, seeds=args.seeds, epochs=args.epochs)
    print(f"train {len(ds['train'])} rows, held out {len(held_out)} rows; picking at random finds the referent "
          f"{result['chance_picked']:.1f} % of the time")
    for name, arm in result["arms"].items():
        print(f"{name.replace('_', ' '):<14} mAP {arm['map_macro']:5.1f} +- {arm['map_macro_sd']:3.1f}  AUROC "
              f"{arm['auroc_macro']:5.1f}  mIOU {arm['miou']:5.1f}  referent picked {arm['referent_picked']:5.1f} %")
    print(f"verdict: {result['verdict']}")


if __name__ == "__main__":
    main()
