"""CLI commands of the export stage (``export``, ``validate``), registered by ``visioncascade.cli``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from visioncascade._signals import sigterm_as_interrupt
from visioncascade._tf import quiet_tensorflow
from visioncascade.export import DEFAULT_INT8_MODE, MIN_PARITY_IMAGES

__all__ = ["register"]

_console = Console(stderr=True)
_out = Console()


def _fmt_parity(parity: dict) -> str:
    if "max_abs_diff" not in parity:
        return parity.get("status", "—")
    flips = parity["near_tie_flips"]
    return (
        f"max|Δp| {parity['max_abs_diff']:.2e}  mean {parity['mean_abs_diff']:.1e}  "
        f"top-1 {parity['top1_agreement']:.1%}{f' ({flips} on near ties)' if flips else ''}  "
        f"({parity['images']} distinct inputs, limit {parity['limit_max_abs_diff']:g})"
    )


def _proof_summary(artifacts: list[dict]) -> str:
    """How many artifacts were run and proven, and how many only checked for structure (never run)."""
    unproven = [a for a in artifacts if a.get("parity", {}).get("status") == "structure-only"]
    if not unproven:
        return f"all {len(artifacts)} artifact{'s' if len(artifacts) != 1 else ''} passed the parity proof"
    return (
        f"{len(artifacts) - len(unproven)} proven by the parity proof, {len(unproven)} checked for structure "
        f"only ({', '.join(a['file'] for a in unproven)}: Core ML cannot run on Linux; "
        "run `visioncascade validate` on macOS to prove them)"
    )


def _ok(entry: dict) -> str:
    parity = entry.get("parity", {})
    if not entry.get("passed", parity.get("passed")):
        return "✗"
    return "structure only" if parity.get("status") == "structure-only" else "✓"


def _print_artifacts(title: str, artifacts: list[dict]) -> None:
    from rich.table import Table

    table = Table(title=title)
    # The file names whole, even on an 80-column log (a pipe, CI): the parity column wraps instead.
    table.add_column("artifact", no_wrap=True, min_width=max((len(e["file"]) for e in artifacts), default=8))
    for column in ("precision", "bytes", "parity", "ok"):
        table.add_column(column, justify="right" if column == "bytes" else "left")
    for entry in artifacts:
        parity = entry.get("parity", {})
        table.add_row(
            entry["file"],
            entry["precision"],
            f"{entry['bytes']:,}" if "bytes" in entry else "",
            _fmt_parity(parity),
            _ok(entry),
        )
    _console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``export`` and ``validate`` commands to ``app``."""

    @app.command()
    def export(
        run: Annotated[Path, typer.Argument(help="A run folder written by `visioncascade train`.")],
        to: Annotated[str, typer.Option("--to", help="Formats, comma-separated: coreml,tflite,onnx.")] = (
            "coreml,tflite,onnx"
        ),
        precision: Annotated[
            str | None,
            typer.Option(
                help="fp32 | fp16 | int8 (comma-separated for several) for every format; default per format: "
                "Core ML fp16, TFLite fp32, ONNX fp32."
            ),
        ] = None,
        out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/exports).")] = None,
        coreml_format: Annotated[
            str, typer.Option(help="mlprogram (.mlpackage, iOS 15+) | mlmodel (neural network, old iOS).")
        ] = "mlprogram",
        ios_target: Annotated[
            str | None, typer.Option(help="Core ML minimum iOS: iOS13..iOS18 (default iOS16; mlmodel iOS13).")
        ] = None,
        parity_images: Annotated[
            int,
            typer.Option(
                min=MIN_PARITY_IMAGES, help=f"Held-out images for the parity proof (≥ {MIN_PARITY_IMAGES})."
            ),
        ] = 200,
        data: Annotated[
            str | None, typer.Option(help="The run's dataset, if not where config.yaml says.")
        ] = None,
        tflite_int8: Annotated[
            str,
            typer.Option(
                help="TFLite int8: dynamic (range: int8 weights, activations quantized at run time) | "
                "full (integer, calibrated on training images; often outside the int8 parity limit)."
            ),
        ] = DEFAULT_INT8_MODE,
        overwrite: Annotated[
            bool,
            typer.Option(
                help="Replace a previous exports folder (atomically); never a folder of anything else."
            ),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    ) -> None:
        """Export RUN to Core ML / TFLite / ONNX and prove every artifact equals the Keras model."""
        # coremltools draws five tqdm bars per conversion; the table below says what happened. tqdm reads
        # the variable when it is first imported, which coremltools does inside export_run.
        os.environ.setdefault("TQDM_DISABLE", "1")
        quiet_tensorflow()
        from visioncascade.export import export_run

        with sigterm_as_interrupt():  # a killed export leaves no half-written folder behind
            result = export_run(
                run,
                to,
                precision,
                out=out,
                overwrite=overwrite,
                coreml_format=coreml_format,
                ios_target=ios_target,
                parity_images=parity_images,
                data=data,
                tflite_int8=tflite_int8,
            )
        if as_json:
            _out.print_json(json.dumps(result.manifest))
        else:
            _print_artifacts(f"exports of {run}", result.artifacts)
        for note in result.notes:
            _console.print(escape(f"note: {note}"))
        _console.print(escape(f"wrote {result.out_dir} (manifest.json); {_proof_summary(result.artifacts)}"))

    @app.command()
    def validate(
        exports: Annotated[Path, typer.Argument(help="An exports folder with manifest.json.")],
        run: Annotated[Path | None, typer.Option(help="The run folder (default: from the manifest).")] = None,
        data: Annotated[
            str | None, typer.Option(help="The run's dataset, if not where config.yaml says.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Re-run the parity proof of every artifact in EXPORTS against the run's Keras model."""
        quiet_tensorflow()
        from visioncascade.export import validate_exports

        report = validate_exports(exports, run_dir=run, data=data)
        if as_json:
            _out.print_json(json.dumps(report))
        else:
            _print_artifacts(f"validation of {exports}", report["artifacts"])
        for note in report.get("notes", []):
            _console.print(escape(f"note: {note}"))
        _console.print(escape(f"{exports}: {_proof_summary(report['artifacts'])}"))
