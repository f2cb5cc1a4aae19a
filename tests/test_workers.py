"""Fits side by side in worker processes (--jobs): same results as the sequential recipe, Ctrl-C, errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import keras
import pytest
from rich.console import Console

from visioncascade.errors import ConfigError, ModelError
from visioncascade.experiment import train_run
from visioncascade.train import TrainConfig
from visioncascade.train.progress import TrainingProgress
from visioncascade.train.workers import FitWorkers

ARGS = [
    "--folds",
    "2",
    "--epochs",
    "4",
    "--patience",
    "4",
    "--average-epochs",
    "2",
    "--image-size",
    "16",
    "--seed",
    "2",
]


def _default_sigint() -> None:
    """Ctrl-C as in a terminal, also when the tests themselves run in the background: a shell starts
    background jobs with SIGINT ignored, children inherit that, and Python then installs no handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "visioncascade.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=_default_sigint,
        **kwargs,
    )


def _workers_with(marker: str) -> list[int]:
    """Processes (Linux /proc) whose environment holds ``marker``: the CLI started with it and its workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _untimed(metrics: dict, *also: str) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("training_seconds", "latency_ms", *also)}


def test_workers_give_the_sequential_recipe_result_fold_by_fold(tmp_path: Path):
    """--jobs 2 trains the final model (first fit + refit) and each fold in workers with one thread each:
    the run is the one a single-threaded process gets by training everything one after the other."""
    parallel = _cli("train", "breastmnist", *ARGS, "--jobs", "2", "--quiet", "--out", str(tmp_path / "par"))
    script = textwrap.dedent(
        f"""
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from visioncascade.experiment import train_run
        from visioncascade.train import TrainConfig
        config = TrainConfig.build(folds=2, epochs=4, patience=4, image_size=16, seed=2, jobs=1, average_epochs=2)
        train_run("breastmnist", {str(tmp_path / "seq")!r}, config, progress=False)
        """
    )
    sequential = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert sequential.returncode == 0, sequential.stderr
    _, err = parallel.communicate(timeout=600)
    assert parallel.returncode == 0, err
    par = json.loads((tmp_path / "par" / "metrics.json").read_text())
    seq = json.loads((tmp_path / "seq" / "metrics.json").read_text())
    assert par["cv"]["completed"] == 2 and par["final"]["refit"]["epochs"] == par["final"]["best_epoch"] + 1
    assert [f["fold"] for f in par["cv"]["folds"]] == [1, 2]
    for key in ("test", "test_uncalibrated", "val", "calibration"):
        assert _untimed(par[key]) == _untimed(seq[key]), key
    for a, b in zip(par["cv"]["folds"], seq["cv"]["folds"], strict=True):
        assert _untimed(a) == _untimed(b)
    rows = [list(csv.reader((tmp_path / run / "history.csv").open())) for run in ("par", "seq")]
    stages = {"final", "refit", "fold1", "fold2"}
    assert rows[0] == rows[1] and {r[0] for r in rows[0][1:]} == stages | {f"{s}-averaging" for s in stages}
    assert (tmp_path / "par" / "config.yaml").read_text().count("jobs: 2") == 1
    assert not (tmp_path / "par" / ".refit.keras").exists()
    assert not (tmp_path / "par" / ".first.keras").exists()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds worker processes through /proc")
def test_ctrl_c_stops_every_worker_and_keeps_the_best_model(tmp_path: Path):
    marker = f"VC_TEST_{uuid.uuid4().hex}"
    out = tmp_path / "run"
    args = ["--folds", "2", "--epochs", "300", "--patience", "300", "--image-size", "16"]
    process = _cli("train", "breastmnist", *args, "--jobs", "2", "--out", str(out), env={marker: "1"})
    deadline = time.monotonic() + 300
    # The first fit has finished an epoch once its best-val-loss checkpoint exists.
    while not list(tmp_path.glob(".run.tmp-*/checkpoints/best_val_loss.keras")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.2)
    assert len(_workers_with(marker)) >= 3  # the CLI and its two workers
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["final"]["refit"] is None
    assert 1 <= metrics["final"]["epochs_run"] < 300 and metrics["cv"]["completed"] == 0
    assert "interrupted" in (out / "report.html").read_text()
    deadline = time.monotonic() + 10  # the resource tracker may take a moment to notice
    while _workers_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _workers_with(marker) == []
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_an_error_in_a_worker_is_raised_as_itself_and_nothing_is_written(tmp_path: Path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    config = TrainConfig.build(
        arch="mobilenet_v2", weights=str(junk), folds=2, epochs=2, image_size=32, jobs=2
    )
    with pytest.raises(ModelError, match="does not fit mobilenet_v2"):
        train_run("breastmnist", tmp_path / "run", config, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.h5"]


def test_a_script_without_a_main_guard_gets_told_how_to_fix_it(tmp_path: Path):
    script = tmp_path / "train_it.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from visioncascade.experiment import train_run
            from visioncascade.train import TrainConfig
            config = TrainConfig.build(folds=2, epochs=1, image_size=16, jobs=2, average_epochs=2)
            train_run("breastmnist", {str(tmp_path / "run")!r}, config, progress=False)
            """
        )
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert 'must do so under `if __name__ == "__main__":`' in result.stderr
    assert "--jobs 1 (jobs=1)" in result.stderr
    assert not (tmp_path / "run").exists()


def _raise_value_error(text: str, *, stage) -> None:
    raise ValueError(text)


def _square(x: int, *, stage) -> int:
    return x * x


@pytest.fixture(scope="module", name="workers")
def shared_workers() -> Iterator[FitWorkers]:
    """One pool of two workers for the tests of what a pool does (each worker's start imports TensorFlow).

    Sharing it is part of what they show: compare runs both arms, and its size parts, in one pool, so a
    pool must go on working after a task's error and a failing ``on_result``.
    """
    with FitWorkers(2) as workers:
        yield workers


@pytest.mark.xdist_group("fit_workers_pool")
def test_fit_workers_run_tasks_and_raise_their_errors(workers: FitWorkers):
    results, stopped = workers.run([(f"t{i}", _square, (i,), {}) for i in range(4)])
    assert results == {"t0": 0, "t1": 1, "t2": 4, "t3": 9} and stopped is False
    with pytest.raises(ValueError, match="broken task"):
        workers.run([("bad", _raise_value_error, ("broken task",), {}), ("ok", _square, (3,), {})])
    assert workers.run([("after", _square, (5,), {})]) == ({"after": 25}, False)
    with pytest.raises(ConfigError, match="jobs >= 2"):
        FitWorkers(1)


def _started(seconds: float, *, stage) -> float:
    """When the task started (after which it takes ``seconds``)."""
    started = time.time()
    time.sleep(seconds)
    return started


@pytest.mark.xdist_group("fit_workers_pool")
@pytest.mark.parametrize("ranked", [True, False])
def test_tasks_that_on_result_adds_start_in_priority_order(workers: FitWorkers, ranked: bool):
    """What compare uses to run an arm's exports as soon as its model is saved, before the other arm's
    waiting fits: on_result may add tasks, and waiting tasks start by priority (ties in the order they
    came). The pool is handed only one task more than it has workers, so the added task still gets
    ahead of b3; without a priority it waits for all the tasks that came before it."""
    # b0 ends 1.3 s after a0: a0's on_result runs before it even when this process lags on a busy host
    # (were both seen done at once, b2 and b3 would be handed to the pool before on_result adds a1).
    tasks = [("a0", _started, (0.2,), {}), *[(f"b{i}", _started, (1.5,), {}) for i in range(4)]]

    def on_result(task: str, started: float) -> list | None:
        return [("a1", _started, (0.0,), {})] if task == "a0" else None

    priority = (lambda task: task[0]) if ranked else None  # "a..." before "b..."
    results, stopped = workers.run(tasks, on_result=on_result, priority=priority)
    assert set(results) == {"a0", "a1", "b0", "b1", "b2", "b3"} and stopped is False
    order = sorted(results, key=results.get)
    # The first two to start: a0 and a b task. Which b task: b0 is handed to the pool first, but on
    # a loaded host its worker can stall between taking it and reading the clock while the other worker
    # ends a0 and starts b1 (seen once under pytest -n 4 on 2 cores).
    assert "a0" in order[:2] and set(order[:2]) - {"a0"} <= {"b0", "b1"}, order
    if ranked:
        assert order.index("a1") < order.index("b3")
    else:
        assert order[-1] == "a1"
    assert workers.run([("after", _square, (4,), {})])[0] == {"after": 16}  # the pool lives on


def _wait_for(path: str, *, stage) -> bool:
    """Whether ``path`` appeared within 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.xdist_group("fit_workers_pool")
def test_each_result_is_handed_over_while_the_other_tasks_run(workers: FitWorkers, tmp_path: Path):
    """What train_run uses to calibrate and save the final model while the last folds train: on_result
    gets a task's result as it arrives. Here the slow task only ends (True) once on_result for the quick
    one has run; handed over at the end instead, it would time out (False)."""
    flag = tmp_path / "quick-done"
    seen: list[tuple[str, object]] = []

    def on_result(task: str, result: object) -> None:
        seen.append((task, result))
        if task == "quick":
            flag.touch()

    tasks = [("slow", _wait_for, (str(flag),), {}), ("quick", _square, (5,), {})]
    results, stopped = workers.run(tasks, on_result=on_result)
    assert results == {"slow": True, "quick": 25} and stopped is False
    assert seen == [("quick", 25), ("slow", True)]

    def broken(task: str, result: object) -> None:
        raise ModelError(f"cannot use {task}")

    with pytest.raises(ModelError, match="cannot use t"):  # its error is the run's
        workers.run([("t", _square, (2,), {})], on_result=broken)
    assert workers.run([("after", _square, (6,), {})]) == ({"after": 36}, False)


def _model_bytes(run_dir: Path, workdir: Path) -> dict[str, int]:
    """A size part: what compare's exports give, without an export (picklable: module level)."""
    return {"model_keras_bytes": (Path(run_dir) / "model.keras").stat().st_size}


@pytest.mark.slow
@pytest.mark.xdist_group("fit_workers_pool")
def test_compare_trains_both_arms_in_one_queue_as_train_would(workers: FitWorkers, tmp_path: Path):
    """With workers, compare puts both arms' fits, and each arm's size parts once its model is saved,
    into one queue of the pool: each arm is still the run that `train` makes with its settings (the
    same pool, one thread per fit), and its training seconds are its own span of the comparison."""
    from visioncascade.experiment import compare
    from visioncascade.train.config import arm_configs

    options = dict(quick=True, folds=2, epochs=1, average_epochs=0, seed=4, jobs=2)
    started = time.perf_counter()
    result = compare(
        "breastmnist",
        tmp_path / "cmp",
        **options,
        progress=False,
        artifact_sizes=_model_bytes,
        workers=workers,
    )
    wall = time.perf_counter() - started
    arms = result.comparison["arms"]
    assert list(arms) == ["scratch", "transfer"] and not list((tmp_path / "cmp").glob(".sizes-*"))
    for arm, config in arm_configs(**options).items():
        alone = train_run(
            "breastmnist", tmp_path / arm, config, name=f"breastmnist-{arm}", progress=False, workers=workers
        )
        ran = json.loads((tmp_path / "cmp" / arm / "metrics.json").read_text())
        for key in ("test", "test_uncalibrated", "val", "calibration"):
            # model_bytes varies by a few bytes with what the process built before (Keras numbers the
            # names of seed generators per process; they are saved with the model).
            assert _untimed(ran[key], "model_bytes") == _untimed(alone.metrics[key], "model_bytes"), (
                arm,
                key,
            )
        assert abs(ran["test"]["model_bytes"] - alone.metrics["test"]["model_bytes"]) < 100
        assert [_untimed(f) for f in ran["cv"]["folds"]] == [
            _untimed(f) for f in alone.metrics["cv"]["folds"]
        ]
        history = [(run / "history.csv").read_text() for run in (tmp_path / "cmp" / arm, tmp_path / arm)]
        assert history[0] == history[1], arm
        assert arms[arm]["exported"] == _model_bytes(tmp_path / "cmp" / arm, tmp_path)
        assert 0 < arms[arm]["training_seconds"] < wall and ran["interrupted"] is False
        assert arms[arm]["test"]["roc_auc"] == alone.metrics["test"]["roc_auc"]


def _blas_threads(*, stage) -> str | None:
    return os.environ.get("OPENBLAS_NUM_THREADS")


def test_each_worker_gets_its_share_of_blas_threads(monkeypatch: pytest.MonkeyPatch):
    """NumPy's OpenBLAS reads its thread count when NumPy loads: workers start with their share of the
    cores in the environment; this process's environment stays as it was, and a user's setting wins."""
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with FitWorkers(2) as workers:
        assert workers.run([("t", _blas_threads, (), {})])[0] == {"t": str(workers.threads)}
        assert "OPENBLAS_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    with FitWorkers(2) as workers:
        assert workers.run([("t", _blas_threads, (), {})])[0] == {"t": "3"}
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"


def test_the_environment_for_new_workers_is_undone_to_what_it_was(monkeypatch: pytest.MonkeyPatch):
    from visioncascade.train.workers import _environment

    monkeypatch.setenv("VC_TEST_SET", "user")
    monkeypatch.delenv("VC_TEST_UNSET", raising=False)
    with _environment({"VC_TEST_SET": "1", "VC_TEST_UNSET": "2"}):
        assert (os.environ["VC_TEST_SET"], os.environ["VC_TEST_UNSET"]) == ("1", "2")
    assert os.environ["VC_TEST_SET"] == "user" and "VC_TEST_UNSET" not in os.environ


def _print_unflushed(text: str, *, stage) -> None:
    print(text, end="")  # stays in the buffer of a worker whose stdout is no terminal


def test_workers_that_skip_the_teardown_keep_their_output_and_exit_status(capfd: pytest.CaptureFixture[str]):
    """Workers skip the interpreter's teardown (a second with TensorFlow), not their output or status 0."""
    with FitWorkers(2) as workers:
        results, _ = workers.run([("t", _print_unflushed, ("said in a worker",), {})])
        processes = list(workers._pool._processes.values())
    assert results == {} and len(processes) == 2  # the task returned None
    assert all(p.exitcode == 0 for p in processes)
    assert "said in a worker" in capfd.readouterr().out


def test_callbacks_need_the_run_in_this_process(tmp_path: Path):
    config = TrainConfig.build(folds=2, epochs=1, image_size=16, jobs=2, average_epochs=2)
    with pytest.raises(ConfigError, match="callbacks run in this process but jobs=2"):
        train_run(
            "breastmnist", tmp_path / "run", config, progress=False, callbacks=[keras.callbacks.History()]
        )
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="--jobs must be at least 1"):
        TrainConfig.build(jobs=0)


def test_progress_shows_one_bar_per_running_worker_task():
    console = Console(file=StringIO(), record=True, width=120, force_terminal=False)
    with TrainingProgress(console=console) as display:
        display.stages("run", total=3)
        for task, label in (("final", "final model (train → val)"), ("fold1", "fold 1/2")):
            display.worker_message(task, "stage", label)
            display.worker_message(task, "begin", 10)
        display.worker_message("fold1", "epoch", {"loss": 0.5, "val_loss": 0.625})
        display.worker_message("final", "end", None)
        display.worker_message("final", "done", None)
        display.worker_message("fold2", "epoch", {"loss": 1.0})  # a task without a bar: ignored
    text = console.export_text()
    assert "fold 1/2" in text and "1/10" in text and "loss 0.500 val 0.625" in text
    assert "1/3" in text  # the stage bar advanced when the final model's fit ended
    assert "final model" not in text  # its bar went when its task was done
