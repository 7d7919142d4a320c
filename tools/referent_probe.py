"""Does the text pick out the person, and which words do it?  The referent probe of ``refava validate-dataset``
(``refava.train.probe``), run on its own on a packaged dataset and a proposals file.

    python tools/referent_probe.py demo/ws/refava demo/sample/annotations/ava_dense_proposals_sample.pkl
"""
from __future__ import annotations

import argparse

from refava.train.detections import load_detection_table
from refava.train.probe import ARM_NAMES, PROBE_EPOCHS, probe_rows, referent_probe
from refava.train.validation import load_train_and_held_out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="packaged RefAVA folder (refava package)")
    parser.add_argument("proposals", help="dense-proposals pickle or detections csv (as validate-dataset --detections)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=PROBE_EPOCHS)
    args = parser.parse_args(argv)
    ds, eval_split = load_train_and_held_out(args.dataset)
    table = load_detection_table(args.proposals)
    result = referent_probe(probe_rows(ds["train"], table), probe_rows(ds[eval_split], table), seeds=args.seeds,
                            epochs=args.epochs)
    print(f"train {result['rows']['train']} rows, held out ({eval_split}) {result['rows']['test']} rows; the referent "
          f"is among the proposals for {result['referent_among_proposals']:.1f} % of them")
    for name, arm in result["arms"].items():
        print(f"{ARM_NAMES[name]:<50} referent picked {arm['referent_picked']:5.1f} % +- "
              f"{arm['referent_picked_sd']:4.1f}")
    for family, f in result["families"].items():
        print(f"{family:<18} {'carry' if f['carries_referent'] else 'do not show that they carry'} the referent "
              f"(lead {f['lead']:+.1f}, seeds' spread {f['spread']:.1f})")
    print(f"verdict: {result['verdict']}")


if __name__ == "__main__":
    main()
