"""Trained runs scored on the test images with and without a look-alike among the training and val images.

    python benchmarks/near_copies_breastmnist.py RUN [RUN ...] [--data breastmnist]

A look-alike is an exact copy or a near copy (32x32 thumbnails within 8 of 255, root mean square; both as
``check_copies`` finds them) of a test image among the data's training and val images. Each run (a folder
written by ``visioncascade train`` or one arm of ``compare``, trained on ``--data``) is scored with its
saved model on the whole test split, on the test images with a look-alike, and on those without; the
subsets' class counts are printed too. Writes nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", default="breastmnist")
    args = parser.parse_args()

    from visioncascade import ModelSpec
    from visioncascade.data import check_copies, load_dataset
    from visioncascade.evaluate import compute_metrics
    from visioncascade.models import load_model

    dataset = load_dataset(args.data)
    if "test" not in dataset.splits:
        raise SystemExit(f"{args.data} has no test split of its own")
    test = dataset.splits["test"]
    _, alike = check_copies(dataset.splits, dataset.labels)
    subsets = {"all": np.ones(len(test), dtype=bool), "with a look-alike": alike, "without": ~alike}
    for name, mask in subsets.items():
        counts = np.bincount(test.labels[mask], minlength=dataset.num_classes)
        per_class = ", ".join(f"{n} {label}" for n, label in zip(counts, dataset.labels, strict=True))
        print(f"{name}: {int(mask.sum())} test images ({per_class})")
    print("\n| run | " + " | ".join(f"{name} (ACC / AUC / minority F1)" for name in subsets) + " |")
    print("|---|" + "---|" * len(subsets))
    for run in args.runs:
        spec = ModelSpec.load(run / "spec.json")
        x, y = dataset.arrays("test", spec.input_size, spec.color_mode)
        probabilities = np.asarray(load_model(run)(x.astype(np.float32), training=False))
        minority = spec.labels.index(
            spec.extra.get("minority_label") or spec.labels[int(np.argmin(np.bincount(y)))]
        )
        cells = []
        for mask in subsets.values():
            m = compute_metrics(y[mask], probabilities[mask], spec.labels, minority)
            cells.append(f"{m['accuracy']:.3f} / {m['roc_auc']:.3f} / {m['minority_f1']:.3f}")
        print(f"| {run} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
