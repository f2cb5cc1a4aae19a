"""``visioncascade demo``: the whole loop on a procedural world, from one command, with no download.

Generates scenes → trains a domain model (object vs empty) and two specialists (shape, colour) → exports
them to ONNX with the parity proof → writes a cascade file and a rules file → starts the API on SQLite →
renders a video of moving objects → watches it with changing contexts, posting events → summarises what
was trained, exported sizes, frames/s, events stored and the custom outputs the API returned.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from visioncascade._fs import atomic_dir
from visioncascade.demo.scenes import render_video, write_datasets

__all__ = ["DemoResult", "run_demo"]

RULES = {
    "version": 1,
    "default": {"message": "I see a {label}", "probability": "{probability}"},
    "rules": [
        {
            "name": "red-alert",
            "when": {"model": "colour", "label": "red", "min_probability": 0.8},
            "output": {
                "message": "something red in {context}: stop and look",
                "probability": "{probability}",
            },
        },
        {
            "name": "round-again",
            "when": {
                "model": "shape",
                "label": "circle",
                "seen": {"label": "circle", "at_least": 3, "within_seconds": 60},
            },
            "output": {"message": "circles keep coming ({count} in a minute)"},
        },
    ],
}


@dataclass
class DemoResult:
    """Where the demo wrote everything, and its summary."""

    out_dir: Path
    summary: dict[str, Any]


def run_demo(
    out: str | Path,
    *,
    seed: int = 0,
    quick: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
) -> DemoResult:
    """Run the whole demo into ``out`` (atomically) and return its summary."""
    from visioncascade.api.background import BackgroundServer
    from visioncascade.api.settings import load_settings
    from visioncascade.api.storage import Database, count_events, create_api_key, upgrade_database
    from visioncascade.experiment import train_run
    from visioncascade.export import export_run
    from visioncascade.runtime import Cascade, ContextSchedule, open_source, watch
    from visioncascade.runtime.sender import EventSender, HttpEventPoster
    from visioncascade.train import TrainConfig

    started = time.perf_counter()
    out = Path(out)
    per_class, epochs, patience, seconds = (150, 20, 8, 6.0) if quick else (300, 40, 10, 12.0)
    with atomic_dir(out, overwrite) as tmp:
        log(f"1/6 generating scenes ({per_class} per class, seed {seed})")
        data = write_datasets(tmp / "data", per_class, seed=seed)
        # No refit on train + val and no weight averaging: these synthetic scenes are learnt almost
        # perfectly on train alone, and the demo's time is better spent elsewhere.
        config = TrainConfig.build(
            folds=0,
            epochs=epochs,
            patience=patience,
            image_size=32,
            color_mode="rgb",
            seed=seed,
            refit=False,
            average_epochs=0,
        )
        runs, exports, models = {}, {}, {}
        for name in ("domain", "shape", "colour"):
            log(f"2/6 training {name} model")
            result = train_run(data[name], tmp / "runs" / name, config, name=name, progress=progress)
            runs[name] = result.run_dir
            test = result.metrics["test"]
            models[name] = {
                "labels": list(result.spec.labels),
                "accuracy": test["accuracy"],
                "minority_f1": test["minority_f1"],
                "parameters": result.metrics["model"]["parameters"],
            }
            log(f"3/6 exporting {name} to ONNX and TFLite (with the parity proof)")
            exported = export_run(
                result.run_dir, ["onnx", "tflite"], out=tmp / "models" / name, parity_images=40
            )
            exports[name] = {a["file"]: a["bytes"] for a in exported.manifest["artifacts"]}
        cascade_doc = {
            "name": "demo",
            "domain": {"model": "models/domain/domain.onnx", "threshold": 0.5, "continue_on": ["object"]},
            "specialists": {
                "shapes": {"model": "models/shape/shape.onnx", "threshold": 0.5},
                "colours": {"model": "models/colour/colour.onnx", "threshold": 0.5},
            },
            "api": {
                "url": "http://127.0.0.1:8000",
                "key_env": "VISIONCASCADE_API_KEY",
                "min_interval_s": 0.5,
            },
        }
        (tmp / "cascade.yaml").write_text(yaml.safe_dump(cascade_doc, sort_keys=False), encoding="utf-8")
        (tmp / "rules.yaml").write_text(yaml.safe_dump(RULES, sort_keys=False), encoding="utf-8")
        log("4/6 starting the API (SQLite) and rendering a video")
        db_url = f"sqlite:///{tmp / 'events.db'}"
        upgrade_database(db_url)
        db = Database(db_url)
        try:
            key = create_api_key(db, "ingest", "demo")[0]
        finally:
            db.dispose()
        video = tmp / "scene.mp4"
        truth = render_video(video, seconds, seed=seed + 1)
        settings = load_settings(
            database_url=db_url,
            rules_path=tmp / "rules.yaml",
            environment="development",
            rate_limit_per_second=10_000.0,
            rate_limit_burst=10_000,
        )
        server = BackgroundServer(settings).start()
        try:
            log(f"5/6 watching {len(truth)} frames with contexts shapes ↔ colours, posting events")
            cascade = Cascade.from_file(tmp / "cascade.yaml")
            sender = EventSender(HttpEventPoster(server.base_url, key), min_interval_s=0.5, device_id="demo")
            source = open_source(video, realtime=True)  # played like a camera, at its own frame rate
            stats = watch(
                cascade,
                source,
                ContextSchedule(["shapes", "colours"], switch_every=45),
                sender=sender,
                save=tmp / "annotated.mp4",
            )
            sender_stats = sender.close(timeout=30)
            watched = stats.summary(source, sender)
        finally:
            server.stop()
        db = Database(db_url)
        try:
            stored = count_events(db)
        finally:
            db.dispose()
        outputs: dict[str, Any] = {}
        for answer in sender_stats.answers:
            outputs.setdefault(answer.get("rule") or "(default)", answer.get("output"))
        summary = {
            "models": models,
            "exported_bytes": exports,
            "watch": {k: watched[k] for k in ("frames", "dropped", "fps", "latency_ms", "decisions")},
            "events": {
                "produced": watched["events"]["produced"],
                "posted": sender_stats.posted,
                "stored": stored,
                "dropped": sender_stats.dropped,
            },
            "outputs_by_rule": outputs,
            "seconds": time.perf_counter() - started,
            "files": {
                "cascade": "cascade.yaml",
                "rules": "rules.yaml",
                "video": "scene.mp4",
                "annotated": "annotated.mp4",
                "database": "events.db",
            },
        }
        log("6/6 writing the summary")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        (tmp / "summary.html").write_text(_html(summary), encoding="utf-8")
    return DemoResult(out_dir=out, summary=summary)


def _html(summary: dict[str, Any]) -> str:
    import html

    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{', '.join(map(html.escape, m['labels']))}</td>"
        f"<td>{m['accuracy']:.3f}</td><td>{m['parameters']:,}</td>"
        f"<td>{', '.join(f'{html.escape(f)}: {b:,} B' for f, b in summary['exported_bytes'][n].items())}</td></tr>"
        for n, m in summary["models"].items()
    )
    outputs = "".join(
        f"<tr><td>{html.escape(str(rule))}</td><td><code>{html.escape(json.dumps(out))}</code></td></tr>"
        for rule, out in summary["outputs_by_rule"].items()
    )
    w, e = summary["watch"], summary["events"]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>visioncascade demo</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:960px;margin:24px auto;color:#0f172a}"
        "table{border-collapse:collapse}td,th{border:1px solid #e2e8f0;padding:4px 8px;text-align:left}"
        "</style></head><body><h1>visioncascade demo</h1>"
        f"<p>{summary['seconds']:.0f} s end to end.</p><h2>Trained and exported</h2><table><tr><th>model</th>"
        f"<th>labels</th><th>test accuracy</th><th>parameters</th><th>exported</th></tr>{rows}</table>"
        f"<h2>Cascade on video</h2><p>{w['frames']} frames at {w['fps']:.0f} frames/s ({w['dropped']} dropped); "
        f"cascade p50 {w['latency_ms']['cascade']['p50']:.2f} ms; "
        f"decisions {html.escape(json.dumps(w['decisions']))}</p>"
        f"<h2>Events</h2><p>{e['produced']} produced, {e['posted']} posted, {e['stored']} stored in SQLite, "
        f"{e['dropped']} dropped.</p><h2>Custom outputs the API returned</h2>"
        f"<table><tr><th>rule</th><th>output</th></tr>{outputs}</table>"
        "<p><a href='annotated.mp4'>annotated video</a></p></body></html>"
    )
