"""The accuracy aim's yardstick: the scratch model's test ACC / ROC-AUC on BreastMNIST over several seeds.

One seed's test figures move by one to four of the 156 test images between runs that differ only in the
seed, so a change to the recipe is judged on the mean over seeds. Each variant trains the final model
alone (``folds=0``: no cross-validation, the refit on, ``jobs=1``: one process) once per seed, from the
same settings as ``visioncascade train breastmnist`` otherwise, and is evaluated on the untouched test
split.

    python benchmarks/seeds_breastmnist.py --seeds 0-4 \\
        --variant default --variant "plain-adam:weight_decay=0" --variant "no-cw:class_weight=none"

A variant is ``NAME`` or ``NAME:key=value,key=value`` with keys of :meth:`TrainConfig.build`
(values are read as YAML: ``0.1``, ``none``, ``false``). Prints a Markdown table (per seed ACC / AUC, the
mean and the standard deviation) and writes every figure to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import yaml


def _seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(part) for part in text.split("-", 1))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def _variant(text: str) -> tuple[str, dict]:
    name, _, settings = text.partition(":")
    changes = {}
    for item in filter(None, settings.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"variant {text!r}: {item!r} is not key=value")
        changes[key.strip()] = yaml.safe_load(value)
    return name, changes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=_seeds, default=_seeds("0-4"), help="e.g. 0-4 or 0,3,7")
    parser.add_argument("--variant", type=_variant, action="append", help="NAME[:key=value,...]")
    parser.add_argument("--data", default="breastmnist")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-seeds.json"))
    args = parser.parse_args()
    variants = args.variant or [("default", {})]

    from visioncascade.errors import ConfigError
    from visioncascade.experiment import train_run
    from visioncascade.train import TrainConfig

    results: dict[str, list[dict]] = {}
    for name, changes in variants:  # bad settings fail before any training
        try:
            TrainConfig.build(**{"folds": 0, "jobs": 1, **changes})
        except (ConfigError, TypeError) as exc:
            raise SystemExit(f"variant {name!r}: {exc}") from None
    for name, changes in variants:
        rows = results.setdefault(name, [])
        for seed in args.seeds:
            config = TrainConfig.build(**{"folds": 0, "jobs": 1, **changes, "seed": seed})
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as folder:
                run = train_run(args.data, Path(folder) / "run", config, progress=False)
            test = run.metrics["test"]
            rows.append(
                {
                    "seed": seed,
                    "accuracy": test["accuracy"],
                    "roc_auc": test["roc_auc"],
                    "minority_f1": test["minority_f1"],
                    "seconds": time.perf_counter() - start,
                }
            )
            print(f"{name} seed {seed}: {test['accuracy']:.3f} / {test['roc_auc']:.3f}", flush=True)

    print(f"\nmachine: {os.cpu_count()} cores; load {os.getloadavg()}")
    print("| variant | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | std |")
    print("|---|" + "---|" * (len(args.seeds) + 2))
    summary = {}
    for name, rows in results.items():
        acc = [row["accuracy"] for row in rows]
        auc = [row["roc_auc"] for row in rows]
        std = f"{statistics.stdev(acc):.3f} / {statistics.stdev(auc):.3f}" if len(rows) > 1 else "—"
        cells = " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(acc, auc, strict=True))
        print(f"| {name} | {cells} | {statistics.mean(acc):.3f} / {statistics.mean(auc):.3f} | {std} |")
        summary[name] = {
            "seeds": rows,
            "accuracy_mean": statistics.mean(acc),
            "roc_auc_mean": statistics.mean(auc),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": args.data, "variants": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
