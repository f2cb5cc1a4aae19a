"""The ``visioncascade`` command line: parses options, calls the library, prints.

Errors derived from :class:`visioncascade.errors.VisionCascadeError` are printed as one clear message
and exit with status 2.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from visioncascade._signals import sigterm_as_interrupt
from visioncascade._tf import quiet_tensorflow
from visioncascade.errors import ConfigError, DataError, VisionCascadeError

if TYPE_CHECKING:
    from visioncascade.runtime.sender import EventSender

app = typer.Typer(
    name="visioncascade",
    help="Train, report, export and cascade small image classifiers for phone apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)

DataArg = Annotated[
    str,
    typer.Argument(
        help="A folder with one sub-folder of images per class, a MedMNIST-style .npz, "
        "or a bundled sample name (breastmnist)."
    ),
]


RefitOption = Annotated[
    bool | None,
    typer.Option(
        "--refit/--no-refit",
        help="Train the final model again on train + val for the best epoch count. "
        "\\[default: on, off with --quick]",
        show_default=False,
    ),
]


JobsOption = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        help="Processes training the final model and the folds side by side (1: one after another). "
        "\\[default: one per core, at most folds + 1]",
        show_default=False,
    ),
]


EdgesOption = Annotated[bool, typer.Option("--edges/--no-edges", help="Add a Sobel edge channel.")]
AugmentOption = Annotated[bool, typer.Option("--augment/--no-augment", help="Augment training data.")]
ClassWeightOption = Annotated[str, typer.Option(help="auto | none.")]
BatchSizeOption = Annotated[int, typer.Option(help="Batch size.")]
WeightDecayOption = Annotated[
    float | None, typer.Option(help="AdamW weight decay; 0 for plain Adam. \\[default: 0.05]")
]
AverageEpochsOption = Annotated[
    int | None,
    typer.Option(
        help="After each fit, train N epochs more at the initial learning rate and keep their average "
        "weights (stochastic weight averaging); 0 turns it off. \\[default: 20 for scratch, 5 for "
        "mobilenet_v2; --quick: 3]",
        show_default=False,
    ),
]


@app.command()
def train(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", help="Run folder to write.")],
    arch: Annotated[str, typer.Option(help="Architecture: scratch | mobilenet_v2.")] = "scratch",
    weights: Annotated[
        str | None,
        typer.Option(
            help="mobilenet_v2 weights: bundled | imagenet | none | PATH to a no-top .h5 (default: bundled)."
        ),
    ] = None,
    freeze: Annotated[
        int | None, typer.Option(help="Freeze the first N layers of the pretrained base.")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="MobileNetV2 width multiplier (0.35 default).")] = None,
    image_size: Annotated[int | None, typer.Option(help="Square input size in pixels.")] = None,
    color_mode: Annotated[str, typer.Option(help="auto | grayscale | rgb.")] = "auto",
    edges: EdgesOption = True,
    augment: AugmentOption = True,
    class_weight: ClassWeightOption = "auto",
    folds: Annotated[
        int | None,
        typer.Option(help="Stratified K-fold CV on the training split; 0 skips CV. \\[default: 5]"),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs. \\[default: 300]")] = None,
    patience: Annotated[
        int | None, typer.Option(help="Early-stopping patience on validation log loss. \\[default: 10]")
    ] = None,
    batch_size: BatchSizeOption = 32,
    learning_rate: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    weight_decay: WeightDecayOption = None,
    average_epochs: AverageEpochsOption = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    name: Annotated[str | None, typer.Option(help="Model name (default: from the data and arch).")] = None,
    quick: Annotated[bool, typer.Option(help="Few folds/epochs, small images: a fast smoke run.")] = False,
    refit: RefitOption = None,
    jobs: JobsOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Train a classifier on DATA and write a run folder (model, spec, metrics, report)."""
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
        weight_decay=weight_decay,
        average_epochs=average_epochs,
        seed=seed,
        quick=quick,
        refit=refit,
        jobs=jobs,
    )
    _check_before_tensorflow(data=data, out=out, overwrite=overwrite)
    with _started_workers(config.jobs) as workers:
        quiet_tensorflow()
        from visioncascade.experiment import train_run

        result = train_run(
            data, out, config, name=name, overwrite=overwrite, progress=not quiet, workers=workers
        )
    _print_summary(result.metrics, result.run_dir, quiet)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder written by `visioncascade train`.")],
    data: Annotated[str | None, typer.Option(help="Evaluate on other data (its test split, or all).")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the evaluation JSON + HTML.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Evaluate a trained run on its test split or on other data."""
    from visioncascade._fs import RUN_FILES, check_run_dir

    check_run_dir(run, RUN_FILES)
    _check_before_tensorflow(data=data)
    quiet_tensorflow()
    from visioncascade.experiment import evaluate_run

    result = evaluate_run(run, data=data, out=out)
    if as_json:
        out_console.print_json(json.dumps(result.metrics))
    else:
        for note in result.metrics["data"]["notes"]:  # as train shows its notes: moved data, copies
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
        _print_metrics_table(result.metrics, title=f"{run} on {result.data_name}")
        _print_without_look_alikes(result.metrics.get("without_look_alikes"), "images evaluated")
        console.print(escape(f"wrote {result.json_path} and {result.html_path}"))


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
    edges: EdgesOption = True,
    augment: AugmentOption = True,
    class_weight: ClassWeightOption = "auto",
    batch_size: BatchSizeOption = 32,
    weight_decay: WeightDecayOption = None,
    average_epochs: AverageEpochsOption = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quick: Annotated[
        bool, typer.Option(help="Fewer folds/epochs, smaller images (< 2 min on 2 cores).")
    ] = False,
    refit: RefitOption = None,
    jobs: JobsOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing comparison in --out.")] = False,
    export_sizes: Annotated[
        bool,
        typer.Option(
            "--export-sizes/--no-export-sizes",
            help="Measure Core ML/TFLite/ONNX sizes (and, without --quick, prove each artifact).",
        ),
    ] = True,
    prove_exports: Annotated[
        bool | None,
        typer.Option(
            "--prove-exports/--no-prove-exports",
            help="Run each sized artifact through export's parity proof and report it "
            "\\[default: on, off with --quick or --no-export-sizes].",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Train scratch and transfer arms the same way and compare them side by side."""
    # Proofs are on by default where there are sized artifacts to prove: not with --quick, nor with
    # --no-export-sizes (which alone must not be refused for the default it did not ask for).
    prove = (not quick and export_sizes) if prove_exports is None else prove_exports
    if prove and not export_sizes:
        raise ConfigError(
            "--prove-exports proves the artifacts that --export-sizes measures; drop --no-export-sizes"
        )
    common = dict(
        folds=folds,
        epochs=epochs,
        patience=patience,
        edges=edges,
        augment=augment,
        class_weight=class_weight,
        batch_size=batch_size,
        weight_decay=weight_decay,
        average_epochs=average_epochs,
        seed=seed,
        quick=quick,
        refit=refit,
        jobs=jobs,
    )
    from visioncascade.train.config import arm_configs

    configs = arm_configs(weights=weights, freeze=freeze, **common)  # compare builds them again
    _check_before_tensorflow(data=data, out=out, overwrite=overwrite)
    if export_sizes:
        # coremltools draws five tqdm bars per conversion, from the workers: they would cut through the
        # progress display (set before the workers start; tqdm reads it when first imported).
        os.environ.setdefault("TQDM_DISABLE", "1")
    with _started_workers(max(config.jobs for config in configs.values())) as workers:
        quiet_tensorflow()
        from visioncascade.experiment import compare as run_compare

        sizes = None
        if export_sizes:
            from visioncascade.export import FORMATS
            from visioncascade.export import export_sizes as measure

            # Two parts of about equal time, each loading the model once: with worker processes, compare
            # measures them side by side; with the parity proof unless --quick (the proofs add 10–20 s to
            # its 1.5 minutes) or --no-prove-exports.
            parts = [("coreml",), tuple(fmt for fmt in FORMATS if fmt != "coreml")]
            sizes = [functools.partial(measure, formats=formats, prove=prove) for formats in parts]

        result = run_compare(
            data,
            out,
            weights=weights,
            freeze=freeze,
            **common,
            overwrite=overwrite,
            progress=not quiet,
            artifact_sizes=sizes,
            workers=workers,
        )
    if not quiet:
        _print_comparison(result.comparison)
    console.print(
        escape(f"wrote {result.out_dir / 'comparison.json'} and {result.out_dir / 'comparison.html'}")
    )


@contextlib.contextmanager
def _started_workers(jobs: int) -> Iterator[Any]:
    """The worker processes of a run with ``jobs`` > 1 (else ``None``), started before this process imports
    TensorFlow: they import it meanwhile, instead of after it (seconds of a run's start on 2 cores)."""
    if jobs < 2:
        yield None
        return
    from visioncascade.train.workers import FitWorkers

    with FitWorkers(jobs) as workers:
        yield workers


def _check_before_tensorflow(
    *, data: str | None = None, out: Path | None = None, overwrite: bool = False
) -> None:
    """Fail on a mistyped DATA or an --out that holds a run before TensorFlow loads (seconds on 2 cores);
    the library checks both again, and reads the data, after."""
    from visioncascade._fs import check_output_dir
    from visioncascade.data import check_source

    if data is not None:
        check_source(data)
    if out is not None:
        check_output_dir(out, overwrite)


def _check_post(config, post: bool | None, cascade_file: Path) -> bool:
    """Whether to post events: ``--post`` needs the cascade file's ``api`` section; the default (None) posts
    when there is one."""
    if post and config.api is None:
        raise ConfigError(
            f"--post needs an api section in {cascade_file} to post events to "
            "(api: {url: http://127.0.0.1:8000}); add one, or leave out --post"
        )
    return config.api is not None if post is None else post


def _make_sender(
    config, post: bool, *, min_interval_s: float | None = None, queue_size: int | None = None
) -> EventSender | None:
    """An EventSender for the cascade's api section (None with --no-post; see :func:`_check_post`).

    ``min_interval_s`` and ``queue_size`` replace the file's (``predict`` posts every event, and queues
    them all).
    """
    from visioncascade.runtime.sender import EventSender, HttpEventPoster

    if not post or config.api is None:
        return None
    api = config.api
    if api.api_key() is None:
        console.print(f"[yellow]warning:[/] ${api.key_env} is not set; posting without an API key")
    poster = HttpEventPoster(api.url, api.api_key(), api.timeout_s)
    return EventSender(
        poster,
        queue_size=max(api.queue_size, queue_size or 0),
        min_interval_s=api.min_interval_s if min_interval_s is None else min_interval_s,
        device_id=api.device_id,
    )


def _undelivered(sender: EventSender, url: str) -> str | None:
    """What became of the queued events that did not reach the API (None when every one did)."""
    stats = sender.stats
    lost = stats.pending + stats.dropped + stats.rejected
    if not lost:
        return None
    parts = []
    if stats.rejected:  # the API's reason says what to mend: a wrong key (401), a context too long (422)...
        parts.append(f"{stats.rejected} refused by the API ({stats.last_rejection})")
    if stats.pending:
        parts.append(f"{stats.pending} not taken before the end ({stats.last_error}; is the API up?)")
    if stats.dropped:
        parts.append(f"{stats.dropped} dropped from the full queue of {sender.queue_size} while it was down")
    return f"{lost} of {stats.queued} event(s) were not delivered to {url}: " + "; ".join(parts)


def _live_table(stats, source, sender):
    from rich.table import Table

    summary = stats.summary(source, sender)
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_row(
        "frames", f"{summary['frames']}  (dropped {summary['dropped']})", "fps", f"{summary['fps']:.1f}"
    )
    lat = summary["latency_ms"]
    table.add_row(
        "latency p50 ms",
        " ".join(f"{k} {v['p50']:.2f}" for k, v in lat.items() if v["p50"] is not None),
        "events",
        str(summary["events"]["produced"]),
    )
    last = stats.last
    if last is not None:
        labels = "  →  ".join(f"{s.stage}: {s.top_label} {s.top_probability:.2f}" for s in last.stages)
        table.add_row("context", last.context, "decision", last.decision)
        table.add_row("labels", labels, "", "")
    if sender is not None:
        ev = summary["events"]
        state = {True: "[green]up[/]", False: "[red]down — retrying[/]", None: "—"}[ev["api_up"]]
        table.add_row(
            "API",
            f"{state}  posted {ev['posted']} pending {ev['pending']} refused {ev['rejected']} dropped {ev['dropped']}",
            "answer",
            json.dumps((ev.get("last_answer") or {}).get("output"))[:60],
        )
    return table


@app.command()
def watch(
    cascade_file: Annotated[Path, typer.Argument(help="The cascade YAML file.")],
    source: Annotated[
        str, typer.Option(help="Camera index, video file, image folder or rtsp/http URL.")
    ] = "0",
    context: Annotated[list[str], typer.Option(help="The user's context (repeat to cycle contexts).")] = [],  # noqa: B006
    switch_every: Annotated[
        int | None, typer.Option(help="Switch to the next --context every N frames.")
    ] = None,
    save: Annotated[
        Path | None, typer.Option(help="Write an annotated video (.mp4, .m4v, .mov, .mkv or .avi).")
    ] = None,
    show: Annotated[bool, typer.Option(help="Show a window (needs a display and GUI OpenCV).")] = False,
    post: Annotated[
        bool | None,
        typer.Option(
            "--post/--no-post",
            help="Send events to the cascade file's API. [default: when the file has an api section]",
            show_default=False,
        ),
    ] = None,
    realtime: Annotated[
        bool | None,
        typer.Option("--realtime/--no-realtime", help="Drop frames when behind (default: live sources)"),
    ] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")
    ] = False,
) -> None:
    """Run a cascade on live frames: fps, per-stage latency, labels and API answers; a summary at the end."""
    from rich.live import Live

    from visioncascade.runtime import Cascade, ContextSchedule, open_source
    from visioncascade.runtime import watch as run_watch
    from visioncascade.runtime.watch import check_save_path

    if not context:
        raise ConfigError("--context is required: the user's context routes frames to a specialist")
    schedule = ContextSchedule(list(context), switch_every)
    cascade = Cascade.from_file(cascade_file)
    for ctx in context:
        cascade.config.specialist_for(ctx)  # unknown contexts fail before the first frame
    post = _check_post(cascade.config, post, cascade_file)
    if post:
        _check_contexts(context)
    if save is not None:
        check_save_path(save)  # before the camera opens, not after the first frame
    frames = open_source(source, realtime=realtime, max_frames=max_frames, max_short_side=cascade.frame_cap)
    sender = _make_sender(cascade.config, post)
    on_result = None
    if show:
        on_result = _window_callback()
    live = Live(console=console, refresh_per_second=4, transient=False) if console.is_terminal else None
    last_draw = [0.0]

    def update(frame, result, stats):
        if on_result is not None:
            on_result(frame, result, stats)
        if live is not None and stats.frames - last_draw[0] >= 5:
            last_draw[0] = stats.frames
            live.update(_live_table(stats, frames, sender))

    if live is not None:
        live.start()
    finished = False
    try:
        with sigterm_as_interrupt():
            stats = run_watch(
                cascade,
                frames,
                schedule,
                sender=sender,
                save=save,
                on_result=update,
            )
        finished = True
    finally:
        # The events already queued are sent whether the loop ended or raised (a specialist that cannot be
        # loaded when its context first comes, say); on an error the user is told what became of them.
        if sender is not None:
            sender.close(timeout=10.0)
        if live is not None:
            if finished:
                live.update(_live_table(stats, frames, sender))
            live.stop()
        if sender is not None and not finished:
            _report_events_after_error(sender, cascade.config.api.url)
    summary = stats.summary(frames, sender)
    if frames.unreadable and not stats.frames:
        raise DataError(
            f"none of the {len(frames.unreadable)} image(s) in {frames.name} could be read: "
            + frames.unreadable_summary
        )
    if frames.unreadable:  # on stderr with --json too: which files, not only how many
        console.print(
            f"[yellow]warning:[/] skipped {len(frames.unreadable)} unreadable image(s): "
            + escape(frames.unreadable_summary),
            highlight=False,
        )
    if as_json:
        out_console.print_json(json.dumps(summary, default=str))
    else:
        console.print(
            f"{summary['frames']} frames ({summary['dropped']} dropped) at {summary['fps']:.1f} fps; "
            f"cascade p50 {summary['latency_ms']['cascade']['p50'] or 0:.2f} ms; "
            f"events {summary['events']['produced']}"
            + (
                f", posted {summary['events']['posted']}, dropped {summary['events']['dropped']}"
                if sender
                else ""
            )
        )
    undelivered = _undelivered(sender, cascade.config.api.url) if sender is not None else None
    if undelivered:  # events lost (refused, or the API down at the end): the run did not do its job
        console.print(f"[bold red]error:[/] {escape(undelivered)}", highlight=False)
        raise typer.Exit(2)


def _check_contexts(contexts: list[str]) -> None:
    """Contexts the API would refuse in every event (see ``EventIn.context``) fail before the first frame."""
    from visioncascade.api.schemas import MAX_ID_LENGTH

    for ctx in contexts:
        if not 1 <= len(ctx) <= MAX_ID_LENGTH or "\x00" in ctx:
            shown = ctx if len(ctx) <= 40 else ctx[:40] + "..."
            raise ConfigError(
                f"--context {shown!r} ({len(ctx)} characters) would be refused by the API in every event: it "
                f"takes 1 to {MAX_ID_LENGTH} characters, no NUL; use a shorter context, or --no-post"
            )


def _report_events_after_error(sender: EventSender, url: str) -> None:
    """After ``watch`` stopped on an error: how many queued events reached the API, how many did not."""
    stats = sender.stats
    undelivered = _undelivered(sender, url)
    if undelivered:
        console.print(
            f"[yellow]warning:[/] watch stopped on an error; {stats.posted} event(s) were posted, "
            + escape(undelivered),
            highlight=False,
        )
    else:
        console.print(
            f"watch stopped on an error; the {stats.posted} event(s) queued before it were posted to {url}",
            highlight=False,
        )


def _window_callback():
    import cv2

    from visioncascade.runtime.watch import annotate

    try:
        cv2.namedWindow("visioncascade")
    except cv2.error as exc:
        raise ConfigError(
            "--show needs a display and an OpenCV build with GUI support (pip install opencv-python); "
            "use --save out.mp4 instead"
        ) from exc

    def show(frame, result, stats):
        cv2.imshow("visioncascade", annotate(frame.image, frame.channel_order, result, stats.fps))
        if cv2.waitKey(1) & 0xFF == ord("q"):
            raise KeyboardInterrupt

    return show


@app.command()
def predict(
    cascade_file: Annotated[Path, typer.Argument(help="The cascade YAML file.")],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    context: Annotated[str, typer.Option(help="The user's context.")],
    post: Annotated[
        bool, typer.Option("--post/--no-post", help="Send every event to the cascade file's API.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Run a cascade on single images (for scripts).

    An image that cannot be read gets an ``error`` in its place and the others are still run (exit code 2
    at the end, as ``grep`` does with a missing file). With ``--post`` every event is posted; one that does
    not reach the API is counted at the end, and the exit code is 2.
    """
    from visioncascade.data.images import read_images
    from visioncascade.runtime import Cascade

    cascade = Cascade.from_file(cascade_file)
    cascade.warm_up([context])  # an unknown context, or a specialist that cannot load, fails before any image
    post = _check_post(cascade.config, post, cascade_file)
    if post:
        _check_contexts([context])
    # Every image is a decision of its own: each event is posted (no min_interval_s), none is dropped.
    sender = _make_sender(cascade.config, post, min_interval_s=0.0, queue_size=len(images))
    results = []
    for image, frame, why in read_images(images, cascade.frame_cap):  # the next decode while this one runs
        if frame is None:
            results.append({"image": str(image), "error": why})
            continue
        result = cascade.run(frame, context)
        if sender is not None and result.event is not None:
            sender.offer(result.event)
        results.append({"image": str(image), **result.to_dict()})
    undelivered = None
    if sender is not None:
        stats = sender.close(timeout=10.0)
        undelivered = _undelivered(sender, cascade.config.api.url)
        answers = {a.get("event_id"): a for a in stats.answers}
        for item in results:
            if item.get("event"):
                item["api"] = answers.get(item["event"]["event_id"])
    if as_json:
        out_console.print_json(json.dumps({"context": context, "results": results}, default=str))
    else:
        for item in results:
            if "error" in item:
                console.print(f"[bold red]error:[/] {escape(item['error'])}", highlight=False)
                continue
            labels = ", ".join(
                f"{s['stage']}: {s['top_label']} {s['top_probability']:.3f}" for s in item["stages"]
            )
            out_console.print(escape(f"{item['image']}: {item['decision']} ({labels})"))
    if undelivered:
        console.print(f"[bold red]error:[/] {escape(undelivered)}", highlight=False)
    if undelivered or any("error" in item for item in results):
        raise typer.Exit(2)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder that keeps everything the demo makes.")] = Path(
        "runs/demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the procedural world and the training.")] = 0,
    quick: Annotated[bool, typer.Option(help="Fewer images, epochs and frames.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing demo folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    serve_after: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Afterwards serve the live camera page (/) and the dashboard with the demo's models and "
            "database, on 127.0.0.1 (Ctrl-C stops).",
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
) -> None:
    """The whole loop on a procedural world: train, export, cascade on video, events stored, custom outputs."""
    _check_before_tensorflow(out=out, overwrite=overwrite)
    quiet_tensorflow()
    from visioncascade.demo import run_demo

    result = run_demo(
        out,
        seed=seed,
        quick=quick,
        overwrite=overwrite,
        progress=False,
        log=lambda message: console.print(f"[bold]{message}[/]"),
    )
    summary = result.summary
    if as_json:
        out_console.print_json(json.dumps(summary, default=str))
    else:
        _print_demo_summary(result)
    if serve_after:
        _serve_demo(result.out_dir, port)


def _print_demo_summary(result: Any) -> None:
    summary = result.summary
    for name, model in summary["models"].items():
        console.print(
            f"{name}: {', '.join(model['labels'])} — test accuracy {model['accuracy']:.3f}, "
            f"{model['parameters']:,} parameters, exported {summary['exported_bytes'][name]}"
        )
    w, e = summary["watch"], summary["events"]
    console.print(f"cascade: {w['frames']} frames at {w['fps']:.0f} frames/s, decisions {w['decisions']}")
    console.print(f"events: {e['produced']} produced, {e['posted']} posted, {e['stored']} stored in SQLite")
    for rule, output in summary["outputs_by_rule"].items():
        console.print(f"API answer ({rule}): {json.dumps(output)}")
    console.print(escape(f"{summary['seconds']:.0f} s; open {result.out_dir / 'summary.html'}"))
    out = result.out_dir
    console.print(
        "point a camera at it: visioncascade serve "
        f"--db sqlite:///{out / 'events.db'} --rules {out / 'rules.yaml'} --cascade {out / 'cascade.yaml'} "
        "(or run the demo with --serve)"
    )


def _serve_demo(out: Path, port: int) -> None:
    """Serve the demo's cascade, rules and database with the pages, printing their addresses with a key."""
    from visioncascade.api.cli import serve
    from visioncascade.api.storage import Database, create_api_key

    db_url = f"sqlite:///{(out / 'events.db').resolve()}"
    db = Database(db_url)
    try:
        key = create_api_key(db, "admin", "demo-pages")[0]
    finally:
        db.dispose()
    console.print(f"[bold]live camera page:[/] http://127.0.0.1:{port}/#key={key}")
    console.print(f"[bold]dashboard:[/]        http://127.0.0.1:{port}/dashboard#key={key}")
    console.print("(the key is an admin key of this demo's database only; Ctrl-C stops the server)")
    serve(
        db=db_url,
        rules=out / "rules.yaml",
        cascade=[out / "cascade.yaml"],
        host="127.0.0.1",
        port=port,
        workers=1,
        environment="development",
        migrate=True,
        log_level="warning",
        access_log=False,
        ssl_certfile=None,
        ssl_keyfile=None,
    )


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def _print_metrics_table(metrics: dict, title: str) -> None:
    from rich.table import Table

    intervals = metrics.get("ci95") or {}
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI (bootstrap)", justify="right")
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "minority_f1", "log_loss", "brier", "ece"):
        table.add_row(key, _fmt(metrics.get(key)), _fmt_interval(intervals.get(key)))
    console.print(table)


def _print_without_look_alikes(figures: dict | None, images: str) -> None:
    if figures:
        from visioncascade.evaluate.report import without_look_alikes_text

        console.print(escape(without_look_alikes_text(figures, images)), highlight=False)


def _fmt_interval(interval: list[float] | None) -> str:
    return "" if not interval else f"{interval[0]:.3f} to {interval[1]:.3f}"


def _print_summary(metrics: dict, run_dir: Path, quiet: bool) -> None:
    if not quiet:
        _print_metrics_table(metrics["test"], title=f"test split — {run_dir}")
        _print_without_look_alikes(metrics["test"].get("without_look_alikes"), "test images")
        cv = metrics.get("cv") or {}
        if cv.get("folds"):
            mean, std = cv["mean"], cv["std"]
            console.print(
                f"CV ({len(cv['folds'])} folds): minority_f1 {mean['minority_f1']:.3f} ± {std['minority_f1']:.3f}, "
                f"roc_auc {mean['roc_auc']:.3f} ± {std['roc_auc']:.3f}"
            )
    console.print(escape(f"wrote run to {run_dir}"))


def _print_comparison(comparison: dict) -> None:
    from rich.table import Table

    table = Table(title=f"scratch vs transfer on {comparison['dataset']['name']}")
    table.add_column("metric")
    for arm in comparison["arms"]:
        table.add_column(arm, justify="right")
    table.add_column("transfer / scratch", justify="right")
    rows = comparison["rows"]
    for row in rows:
        if "passed" in row:  # an artifact's parity proof: its max |Δp| and the verdict
            cells = [
                "—" if v is None else f"{v:.2g} {'passed' if ok else '[red]FAILED[/]'}"
                for v, ok in zip(row["values"], row["passed"], strict=True)
            ]
            table.add_row(f"{row['metric']} (limit {row['limit']:g})", *cells, "")
            continue
        table.add_row(row["metric"], *[_fmt(v) for v in row["values"]], _fmt(row.get("ratio")))
    console.print(table)
    differences = comparison.get("differences")
    if differences:
        table = Table(title=f"{differences['of']} on the test split: 95% CI (paired bootstrap)")
        table.add_column("metric")
        table.add_column("difference", justify="right")
        table.add_column("95% CI", justify="right")
        for key, d in differences["metrics"].items():
            table.add_row(key, _fmt(d["difference"]), _fmt_interval(d["ci95"]))
        console.print(table)


def _register_subcommands() -> None:
    from visioncascade.api.cli import register as register_api

    register_api(app)
    from visioncascade.export.cli import register as register_export

    register_export(app)


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except VisionCascadeError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
