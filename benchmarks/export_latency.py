"""Exported artifacts per run: bytes, parity figures and batch-1 CPU latency next to Keras.

For each run folder: exports Core ML (fp32/fp16/int8 ML Programs), TFLite (fp32/fp16/int8) and ONNX (fp32)
with the parity proof, then times one-image inference of every executable artifact (LiteRT with 1 thread,
onnxruntime with 1 intra-op thread) next to Keras ``model.predict`` and a traced ``tf.function`` of the
same model, in the same process. Core ML has no Linux runtime: its latency is left out (the NumPy MIL
interpreter is a proof tool, not a runtime).

Figures are medians over ``--rounds`` rounds of ``--calls`` timed calls each (after warm-up).

    PYTHONPATH=src python benchmarks/export_latency.py                 # trains quick scratch + transfer runs
    PYTHONPATH=src python benchmarks/export_latency.py --run runs/a --run runs/b --json out.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def _time(fn, x_list, calls: int, rounds: int, warmup: int = 10) -> dict[str, float]:
    for i in range(warmup):
        fn(x_list[i % len(x_list)])
    p50s, p99s = [], []
    for _ in range(rounds):
        times = []
        for i in range(calls):
            x = x_list[i % len(x_list)]
            start = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - start) * 1000.0)
        p50s.append(np.percentile(times, 50))
        p99s.append(np.percentile(times, 99))
    return {"p50_ms": float(np.median(p50s)), "p99_ms": float(np.median(p99s))}


def _train_runs(root: Path) -> list[Path]:
    from visioncascade.experiment import train_run
    from visioncascade.train import TrainConfig

    runs = []
    for arch, size in (("scratch", 28), ("mobilenet_v2", 96)):
        out = root / f"breast-{arch}"
        config = TrainConfig.build(arch=arch, folds=0, epochs=4, patience=2, image_size=size, seed=0)
        train_run("breastmnist", out, config, progress=False)
        runs.append(out)
    return runs


def bench_run(run_dir: Path, workdir: Path, calls: int, rounds: int, parity_images: int) -> dict:
    """Export one run and time every artifact; returns a JSON-ready dict."""
    import tensorflow as tf

    from visioncascade.export import LiteRTRunner, OnnxRunner, export_run
    from visioncascade.models import load_model
    from visioncascade.spec import ModelSpec

    spec = ModelSpec.load(run_dir / "spec.json")
    model = load_model(run_dir)
    exports = []
    started = time.perf_counter()
    for formats, precisions, name in (("coreml,tflite", "fp32,fp16,int8", "a"), ("onnx", None, "b")):
        result = export_run(run_dir, formats, precisions, out=workdir / f"{run_dir.name}-{name}", overwrite=True,
                            parity_images=parity_images)  # fmt: skip
        exports += [(result.out_dir, a) for a in result.artifacts]
    export_seconds = time.perf_counter() - started
    rng = np.random.default_rng(0)
    xs = [rng.uniform(0, 255, (1, *spec.input_shape)).astype(np.float32) for _ in range(16)]
    rows = []
    keras_predict = _time(lambda x: model.predict(x, verbose=0), xs, calls, rounds)
    forward = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    tf_function = _time(lambda x: forward(tf.constant(x)).numpy(), xs, calls, rounds)
    rows.append(
        {
            "artifact": "Keras model.predict",
            "bytes": (run_dir / "model.keras").stat().st_size,
            **keras_predict,
        }
    )
    rows.append({"artifact": "Keras tf.function (traced)", "bytes": None, **tf_function})
    try:
        xla = tf.function(lambda t: model(t, training=False), jit_compile=True)
        rows.append(
            {"artifact": "Keras tf.function (XLA jit_compile)", "bytes": None,
             **_time(lambda x: xla(tf.constant(x)).numpy(), xs, calls, rounds)}
        )  # fmt: skip
    except Exception as exc:  # XLA unavailable for some op: reported, not fatal
        print(f"XLA tf.function skipped: {exc}")
    for out_dir, entry in exports:
        path = out_dir / entry["file"]
        row = {
            "artifact": entry["file"],
            "format": entry["format"],
            "precision": entry["precision"],
            "bytes": entry["bytes"],
            "max_abs_diff": entry["parity"].get("max_abs_diff"),
            "mean_abs_diff": entry["parity"].get("mean_abs_diff"),
            "top1_agreement": entry["parity"].get("top1_agreement"),
            "parity_frames": entry["parity"].get("images"),
        }
        if entry["format"] == "tflite":
            runner = LiteRTRunner(path, num_threads=1)
            row.update(_time(lambda x, r=runner: r.predict_one(x[0]), xs, calls, rounds))
        elif entry["format"] == "onnx":
            runner = OnnxRunner(path, intra_op_threads=1)
            row.update(_time(lambda x, r=runner: r.predict(x), xs, calls, rounds))
        else:
            row.update({"p50_ms": None, "p99_ms": None})
        rows.append(row)
    return {
        "run": str(run_dir),
        "architecture": spec.architecture,
        "input": f"{spec.input_size[0]}x{spec.input_size[1]} {spec.color_mode}",
        "parameters": int(model.count_params()),
        "export_and_proof_seconds": round(export_seconds, 1),
        "rows": rows,
    }


def _markdown(results: list[dict]) -> str:
    lines = []
    for res in results:
        lines.append(f"### {res['architecture']} ({res['input']}, {res['parameters']:,} parameters)\n")
        lines.append("| artifact | bytes | max abs Δp | mean abs Δp | top-1 agree | p50 ms | p99 ms |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for row in res["rows"]:

            def f(v, fmt):
                return "—" if v is None else format(v, fmt)

            lines.append(
                f"| {row['artifact']} | {f(row['bytes'], ',')} | {f(row.get('max_abs_diff'), '.2e')} | "
                f"{f(row.get('mean_abs_diff'), '.1e')} | {f(row.get('top1_agreement'), '.1%')} | "
                f"{f(row['p50_ms'], '.3f')} | {f(row['p99_ms'], '.3f')} |"
            )
        lines.append("")
    if len(results) == 2:
        a, b = results
        ratios = []
        for fmt, prec in (("coreml", "fp16"), ("tflite", "int8"), ("onnx", "fp32")):
            sa = next(r["bytes"] for r in a["rows"] if r.get("format") == fmt and r.get("precision") == prec)
            sb = next(r["bytes"] for r in b["rows"] if r.get("format") == fmt and r.get("precision") == prec)
            ratios.append(f"{fmt} {prec}: {sb:,} / {sa:,} = {sb / sa:.1f}x")
        lines.append(f"Size ratio {b['architecture']} / {a['architecture']}: " + "; ".join(ratios))
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run the benchmark, print markdown (and write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", type=Path, help="run folder (repeatable)")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parity-images", type=int, default=200)
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vc-bench-") as tmp:
        runs = args.run or _train_runs(Path(tmp) / "runs")
        results = [
            bench_run(r, Path(tmp) / "exports", args.calls, args.rounds, args.parity_images) for r in runs
        ]
    meta = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "calls": args.calls,
        "rounds": args.rounds,
    }
    print(json.dumps(meta, indent=2))
    print(_markdown(results))
    if args.json:
        args.json.write_text(
            json.dumps({"meta": meta, "results": results}, indent=2) + "\n", encoding="utf-8"
        )


if __name__ == "__main__":
    main()
