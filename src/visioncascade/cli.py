"""The ``visioncascade`` command line: parses options, calls the library, prints.

Errors derived from :class:`visioncascade.errors.VisionCascadeError` are printed as one clear message
and exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from visioncascade.errors import VisionCascadeError

app = typer.Typer(
    name="visioncascade",
    help="Train, report, export and cascade small image classifiers for phone apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
out_console = Console()

DataArg = Annotated[
    str,
    typer.Argument(
        help="A folder with one sub-folder of images per class, a MedMNIST-style .npz, "
        "or a bundled sample name (breastmnist)."
    ),
]


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@app.command()
def train(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", help="Run folder to write.")],
    arch: Annotated[str, typer.Option(help="Architecture: scratch | mobilenet_v2.")] = "scratch",
    weights: Annotated[
        str | None,
        typer.Option(help="mobilenet_v2 weights: imagenet | none | PATH to a no-top .h5 (default: bundled)."),
    ] = None,
    freeze: Annotated[
        int | None, typer.Option(help="Freeze the first N layers of the pretrained base.")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="MobileNetV2 width multiplier (0.35 default).")] = None,
    image_size: Annotated[int | None, typer.Option(help="Square input size in pixels.")] = None,
    color_mode: Annotated[str, typer.Option(help="auto | grayscale | rgb.")] = "auto",
    edges: Annotated[bool, typer.Option("--edges/--no-edges", help="Add a Sobel edge channel.")] = True,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Augment training data.")] = True,
    class_weight: Annotated[str, typer.Option(help="auto | none.")] = "auto",
    folds: Annotated[int, typer.Option(help="Stratified K-fold CV on the training split; 0 skips CV.")] = 5,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 300,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (validation log loss).")] = 10,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 32,
    learning_rate: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    name: Annotated[str | None, typer.Option(help="Model name (default: from the data and arch).")] = None,
    quick: Annotated[bool, typer.Option(help="Few folds/epochs, small images: a fast smoke run.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Train a classifier on DATA and write a run folder (model, spec, metrics, report)."""
    _quiet_tensorflow()
    from visioncascade.experiment import train_run
    from visioncascade.train import TrainConfig

    config = TrainConfig.build(
        arch=arch,
        weights=weights,
        freeze=freeze,
        alpha=alpha,
        image_size=image_size,
        color_mode=color_mode,
        edges=edges,
        augment=augment,
        class_weight=class_weight,
        folds=folds,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        quick=quick,
    )
    result = train_run(data, out, config, name=name, overwrite=overwrite, progress=not quiet)
    _print_summary(result.metrics, result.run_dir, quiet)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder written by `visioncascade train`.")],
    data: Annotated[str | None, typer.Option(help="Evaluate on other data (its test split, or all).")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the evaluation JSON + HTML.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Evaluate a trained run on its test split or on other data."""
    _quiet_tensorflow()
    from visioncascade.experiment import evaluate_run

    result = evaluate_run(run, data=data, out=out)
    if as_json:
        out_console.print_json(json.dumps(result.metrics))
    else:
        _print_metrics_table(result.metrics, title=f"{run} on {result.data_name}")
        console.print(f"wrote {result.json_path} and {result.html_path}")


@app.command()
def compare(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for both runs and the comparison.")],
    folds: Annotated[int | None, typer.Option(help="CV folds for both arms.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs for both arms.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience for both arms.")] = None,
    weights: Annotated[
        str | None, typer.Option(help="Transfer weights: imagenet | PATH (default: bundled).")
    ] = None,
    freeze: Annotated[int | None, typer.Option(help="Layers of MobileNetV2 to freeze.")] = None,
    edges: Annotated[bool, typer.Option("--edges/--no-edges")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quick: Annotated[
        bool, typer.Option(help="Fewer folds/epochs, smaller images (< 2 min on 2 cores).")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing comparison in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Train scratch and transfer arms the same way and compare them side by side."""
    _quiet_tensorflow()
    from visioncascade.experiment import compare as run_compare

    result = run_compare(
        data,
        out,
        folds=folds,
        epochs=epochs,
        patience=patience,
        weights=weights,
        freeze=freeze,
        edges=edges,
        seed=seed,
        quick=quick,
        overwrite=overwrite,
        progress=not quiet,
    )
    if not quiet:
        _print_comparison(result.comparison)
    console.print(f"wrote {result.out_dir / 'comparison.json'} and {result.out_dir / 'comparison.html'}")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def _print_metrics_table(metrics: dict, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "minority_f1", "log_loss", "brier", "ece"):
        table.add_row(key, _fmt(metrics.get(key)))
    console.print(table)


def _print_summary(metrics: dict, run_dir: Path, quiet: bool) -> None:
    if not quiet:
        _print_metrics_table(metrics["test"], title=f"test split — {run_dir}")
        cv = metrics.get("cv") or {}
        if cv.get("folds"):
            mean, std = cv["mean"], cv["std"]
            console.print(
                f"CV ({len(cv['folds'])} folds): minority_f1 {mean['minority_f1']:.3f} ± {std['minority_f1']:.3f}, "
                f"roc_auc {mean['roc_auc']:.3f} ± {std['roc_auc']:.3f}"
            )
    console.print(f"wrote run to {run_dir}")


def _print_comparison(comparison: dict) -> None:
    from rich.table import Table

    table = Table(title=f"scratch vs transfer on {comparison['dataset']['name']}")
    table.add_column("metric")
    for arm in comparison["arms"]:
        table.add_column(arm, justify="right")
    table.add_column("transfer / scratch", justify="right")
    rows = comparison["rows"]
    for row in rows:
        table.add_row(row["metric"], *[_fmt(v) for v in row["values"]], _fmt(row.get("ratio")))
    console.print(table)


def _register_subcommands() -> None:
    from visioncascade.api.cli import register as register_api

    register_api(app)


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except VisionCascadeError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
