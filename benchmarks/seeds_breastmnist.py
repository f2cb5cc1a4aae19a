"""The accuracy aim's yardstick: the scratch model's test ACC / ROC-AUC on BreastMNIST over several seeds.

One seed's test figures move by one to four of the 156 test images between runs that differ only in the
seed, so a change to the recipe is judged on the mean over seeds. Each variant trains the final model
alone (``folds=0``: no cross-validation, the refit on, ``jobs=1``: one process) once per seed, from the
same settings as ``visioncascade train breastmnist`` otherwise, and is evaluated on the untouched test
split.

    python benchmarks/seeds_breastmnist.py --seeds 0-4 \\
        --variant default --variant "plain-adam:weight_decay=0" --variant "no-cw:class_weight=none"

A variant is ``NAME`` or ``NAME:key=value,key=value`` with keys of :meth:`TrainConfig.build`
(values are read as YAML: ``0.1``, ``none``, ``false``, ``{filters: [8, 16, 32]}``). Prints a Markdown
table (per seed ACC / AUC, the mean and the standard deviation) and writes every figure to ``--out`` as JSON.

``--unseen`` also gives each seed's test figures without the test images that are exact copies of a
training or val image (BreastMNIST's test[76] is train[115], under the other label): the same models,
scored on the unseen test images only; and scored apart on the test images with a look-alike among the
training or val images (an exact or near copy, as ``check_copies`` finds them: 60 of BreastMNIST's 156) and on those
without one. It needs data with its own test split.

``--members M`` turns each seed's figure into that of an ensemble: M models trained independently (member
``j`` with seed ``seed + 1000 * j``, the same settings otherwise), their test probabilities averaged. It
needs data with its own test split (the members must share it), e.g. ``breastmnist``:

    python benchmarks/seeds_breastmnist.py --seeds 0-4 --members 4 \
        --variant "half-width:arch_params={filters: [8, 16, 32]}"
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

import numpy as np
import yaml


def _seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(part) for part in text.split("-", 1))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def _top_level_items(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and braces (``a=1,b=[1, 2]`` -> two items)."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item.strip()]


def _variant(text: str) -> tuple[str, dict]:
    name, _, settings = text.partition(":")
    changes = {}
    for item in _top_level_items(settings):
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
    parser.add_argument("--members", type=int, default=1, help="models averaged per seed (default 1)")
    parser.add_argument(
        "--unseen", action="store_true", help="also score without test copies of training images"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-seeds.json"))
    args = parser.parse_args()
    variants = args.variant or [("default", {})]
    if args.members < 1:
        raise SystemExit(f"--members must be at least 1, got {args.members}")

    from visioncascade.data import check_copies, copies_of, load_dataset
    from visioncascade.errors import ConfigError
    from visioncascade.evaluate import compute_metrics
    from visioncascade.experiment import train_run
    from visioncascade.models import load_model
    from visioncascade.train import TrainConfig

    dataset = load_dataset(args.data)
    if (args.members > 1 or args.unseen) and "test" not in dataset.splits:
        raise SystemExit(f"--members and --unseen need data with its own test split; {args.data} has none")
    unseen = np.ones(len(dataset.splits.get("test", [])), dtype=bool)
    apart = unseen.copy()  # no exact or near copy among the training and val images
    if args.unseen:
        reference = {name: dataset.splits[name] for name in ("train", "val") if name in dataset.splits}
        copies = copies_of(dataset.splits["test"], "test", reference)
        unseen[[index for index, _ in copies]] = False
        print(f"--unseen: {len(copies)} test image(s) left out: {'; '.join(c for _, c in copies) or 'none'}")
        apart[:] = ~check_copies(dataset.splits, dataset.labels)[1]
        print(f"--unseen: {int((~apart).sum())} test image(s) with a look-alike, {int(apart.sum())} without")
    subsets = {"unseen": unseen, "apart": apart, "alike": ~apart}

    results: dict[str, list[dict]] = {}
    for name, changes in variants:  # bad settings fail before any training
        try:
            TrainConfig.build(**{"folds": 0, "jobs": 1, **changes})
        except (ConfigError, TypeError) as exc:
            raise SystemExit(f"variant {name!r}: {exc}") from None
    for name, changes in variants:
        rows = results.setdefault(name, [])
        for seed in args.seeds:
            start = time.perf_counter()
            probabilities, member_figures = [], []
            for member in range(args.members):
                config = TrainConfig.build(**{"folds": 0, "jobs": 1, **changes, "seed": seed + 1000 * member})
                with tempfile.TemporaryDirectory() as folder:
                    run = train_run(args.data, Path(folder) / "run", config, progress=False)
                    if args.members > 1 or args.unseen:
                        x, y = dataset.arrays("test", run.spec.input_size, run.spec.color_mode)
                        model = load_model(run.run_dir)
                        probabilities.append(np.asarray(model(x.astype(np.float32), training=False)))
                member_figures.append([run.metrics["test"]["accuracy"], run.metrics["test"]["roc_auc"]])
            test = run.metrics["test"]
            labels = run.spec.labels
            minority = labels.index(test["minority_label"])
            if args.members > 1:
                test = compute_metrics(y, sum(probabilities) / args.members, labels, minority)
            figures_unseen: dict[str, dict] = {}
            if args.unseen:
                for subset, mask in subsets.items():
                    scored = compute_metrics(
                        y[mask], (sum(probabilities) / args.members)[mask], labels, minority
                    )
                    figures_unseen[subset] = {
                        k: scored[k] for k in ("accuracy", "roc_auc", "minority_f1", "n")
                    }
            rows.append(
                {
                    "seed": seed,
                    "accuracy": test["accuracy"],
                    "roc_auc": test["roc_auc"],
                    "minority_f1": test["minority_f1"],
                    "members": member_figures,
                    "unseen": figures_unseen,
                    "seconds": time.perf_counter() - start,
                }
            )
            extra = (
                " ("
                + ", ".join(
                    f"{k} {v['accuracy']:.3f} / {v['roc_auc']:.3f}" for k, v in figures_unseen.items()
                )
                + ")"
                if args.unseen
                else ""
            )
            print(f"{name} seed {seed}: {test['accuracy']:.3f} / {test['roc_auc']:.3f}{extra}", flush=True)

    print(f"\nmachine: {os.cpu_count()} cores; load {os.getloadavg()}; members per seed: {args.members}")
    print("| variant | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | std |")
    print("|---|" + "---|" * (len(args.seeds) + 2))
    summary = {}
    for name, rows in results.items():
        acc = [row["accuracy"] for row in rows]
        auc = [row["roc_auc"] for row in rows]
        std = f"{statistics.stdev(acc):.3f} / {statistics.stdev(auc):.3f}" if len(rows) > 1 else "—"
        cells = " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(acc, auc, strict=True))
        print(f"| {name} | {cells} | {statistics.mean(acc):.3f} / {statistics.mean(auc):.3f} | {std} |")
        for subset, what in (
            ("unseen", "unseen test images only"),
            ("apart", "test images without a look-alike"),
            ("alike", "test images with a look-alike"),
        ):
            if not args.unseen:
                break
            acc_u = [row["unseen"][subset]["accuracy"] for row in rows]
            auc_u = [row["unseen"][subset]["roc_auc"] for row in rows]
            cells_u = " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(acc_u, auc_u, strict=True))
            print(
                f"| {name}, {what} ({rows[0]['unseen'][subset]['n']}) | {cells_u} | "
                f"{statistics.mean(acc_u):.3f} / {statistics.mean(auc_u):.3f} | — |"
            )
        summary[name] = {
            "seeds": rows,
            "accuracy_mean": statistics.mean(acc),
            "roc_auc_mean": statistics.mean(auc),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"data": args.data, "members": args.members, "variants": summary}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
