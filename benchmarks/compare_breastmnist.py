"""Benchmark 1 of the training issue: `compare` on bundled BreastMNIST at default settings.

Runs ``visioncascade compare breastmnist`` (5 folds, up to 300 epochs, patience 10) and prints both arms'
test accuracy, ROC-AUC, minority F1, bytes and training seconds next to the MedMNIST v2 paper's figures,
then each arm's 95% bootstrap intervals and the paired transfer-minus-scratch differences.

    python benchmarks/compare_breastmnist.py --out runs/bench-compare [--seed 0] [--jobs N] [--average-epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PAPER = {  # MedMNIST v2 (Yang et al. 2023), BreastMNIST test split
    "ResNet-18 (28)": {"accuracy": 0.863, "roc_auc": 0.901, "parameters": 11_200_000},
    "Google AutoML Vision": {"accuracy": 0.861, "roc_auc": 0.919, "parameters": None},
}


def _interval(interval: list[float] | None) -> str:
    return "—" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-compare"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument(
        "--average-epochs",
        type=int,
        default=None,
        help="weight-averaging epochs per fit (default: each arch's, 20 scratch / 5 transfer; 0: off)",
    )
    args = parser.parse_args()
    from visioncascade.experiment import compare

    start = time.perf_counter()
    result = compare(
        "breastmnist",
        args.out,
        seed=args.seed,
        quick=args.quick,
        jobs=args.jobs,
        average_epochs=args.average_epochs,
        overwrite=True,
        progress=False,
    )
    wall = time.perf_counter() - start
    arms = result.comparison["arms"]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores; load {os.getloadavg()}; wall {wall:.0f} s")
    print(
        f"{'arm':<22}{'ACC':>7}{'AUC':>7}{'minF1':>7}{'CV minF1':>16}{'params':>10}{'bytes':>10}{'train s':>9}"
    )
    for name, arm in arms.items():
        cv = arm["cv"]
        print(
            f"{name:<22}{arm['accuracy']:>7.3f}{arm['roc_auc']:>7.3f}{arm['minority_f1']:>7.3f}"
            f"{cv.get('minority_f1', float('nan')):>9.3f}±{cv.get('minority_f1_std', float('nan')):.3f}"
            f"{arm['parameters']:>10,}{arm['model_bytes']:>10,}{arm['training_seconds']:>9.0f}"
        )
    for name, ref in PAPER.items():
        print(f"{name:<22}{ref['accuracy']:>7.3f}{ref['roc_auc']:>7.3f}")
    print("95% bootstrap intervals on the test split:")
    for name, arm in arms.items():
        ci = arm["test"]["ci95"]
        print(
            f"  {name:<20}"
            + "  ".join(f"{k} {_interval(ci[k])}" for k in ("accuracy", "roc_auc", "minority_f1"))
        )
    differences = result.comparison.get("differences")
    if differences:
        print(f"{differences['of']} (paired bootstrap, 95%):")
        for key, d in differences["metrics"].items():
            print(f"  {key:<20}{d['difference']:+.3f}  {_interval(d['ci95'])}")
    jobs = result.comparison["settings"]["jobs"]
    summary = {
        "wall_seconds": wall,
        "load": os.getloadavg(),
        "arms": arms,
        "differences": differences,
        "seed": args.seed,
        "jobs": jobs,
    }
    (args.out / "benchmark.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
