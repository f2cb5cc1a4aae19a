"""Self-contained HTML reports (inline CSS, plots embedded as PNG): one per run, one per comparison."""

from __future__ import annotations

import html
from typing import Any

from visioncascade.evaluate.metrics import BOOTSTRAP_RESAMPLES

__all__ = ["render_comparison_report", "render_evaluation_report", "render_run_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f8fafc;color:#0f172a}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6rem;margin:0 0 4px}h2{font-size:1.15rem;margin:28px 0 10px;border-bottom:1px solid #e2e8f0;
padding-bottom:4px}.sub{color:#475569;margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{background:white;border:1px solid #e2e8f0;border-radius:8px;padding:10px 12px}
.card .v{font-size:1.35rem;font-weight:600}.card .k{font-size:.8rem;color:#64748b}
.card .ci{font-size:.75rem;font-weight:400;color:#64748b}
table{border-collapse:collapse;background:white;font-size:.9rem}th,td{border:1px solid #e2e8f0;
padding:5px 9px;text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f1f5f9}
img{max-width:100%;background:white;border:1px solid #e2e8f0;border-radius:6px}
.row{display:flex;gap:14px;flex-wrap:wrap;align-items:flex-start}.warn{background:#fef9c3;border:1px solid
#fde047;padding:8px 12px;border-radius:6px}pre{background:white;border:1px solid #e2e8f0;padding:10px;
overflow:auto;font-size:.8rem}.muted{color:#64748b;font-size:.85rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _row_cell(row: dict[str, Any], index: int) -> str:
    """One arm's value in a comparison row; a proof row's value says whether it passed."""
    value = row["values"][index]
    passed = row.get("passed")
    if passed is None or value is None:
        return _f(value)
    verdict = "passed" if passed[index] else "<b>failed</b>"
    return f"{value:.2g} ({verdict}, limit {row['limit']:g})"


def _interval(interval: list[float] | None) -> str:
    return "—" if not interval else f"{interval[0]:.3f} to {interval[1]:.3f}"


def _with_ci(section: dict[str, Any], key: str) -> str:
    """A card's value with its 95% bootstrap interval beneath (when the section has one)."""
    interval = (section.get("ci95") or {}).get(key)
    ci = f"<div class='ci'>95% CI {_interval(interval)}</div>" if interval else ""
    return _f(section.get(key)) + ci


_CI_NOTE = (
    "<p class='muted'>95% CI: percentile bootstrap over the evaluated images, stratified by class "
    f"({BOOTSTRAP_RESAMPLES} resamples, the model fixed) — how far a figure could move on another test set "
    "of this size and class balance.</p>"
)


def _bytes(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _img(b64: str | None, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _cards(items: list[tuple[str, str]]) -> str:
    return (
        "<div class='cards'>"
        + "".join(
            f"<div class='card'><div class='v'>{v}</div><div class='k'>{_e(k)}</div></div>" for k, v in items
        )
        + "</div>"
    )


def _per_class_table(section: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(label)}</td><td>{_f(m['precision'])}</td><td>{_f(m['recall'])}</td><td>{_f(m['f1'])}</td>"
        f"<td>{m['support']}</td></tr>"
        for label, m in section["per_class"].items()
    )
    return f"<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>"


def _prior_correction(calibration: dict[str, Any]) -> str:
    """``", prior correction 0.83 of the class weights' shift (logit offsets -0.41 / +0.41)"``, or nothing
    (no class weights to undo)."""
    alpha, offsets = calibration.get("prior_correction", 0.0), calibration.get("logit_offsets") or []
    if not offsets:
        return ""
    shown = " / ".join(f"{v:+.2f}" for v in offsets)
    return f", prior correction {alpha:.2f} of the class weights' shift (logit offsets {_e(shown)})"


def _metric_table(columns: dict[str, dict[str, Any]], keys: tuple[str, ...]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    rows = "".join(
        f"<tr><td>{_e(k)}</td>" + "".join(f"<td>{_f(col.get(k))}</td>" for col in columns.values()) + "</tr>"
        for k in keys
    )
    return f"<table><tr><th>metric</th>{head}</tr>{rows}</table>"


def render_run_report(context: dict[str, Any]) -> str:
    """HTML for one run. ``context`` holds ``metrics``, ``spec``, ``config``, ``plots`` and ``dataset``."""
    metrics, spec, plots = context["metrics"], context["spec"], context["plots"]
    test = metrics["test"]
    model = metrics["model"]
    cal = metrics.get("calibration", {})
    title = f"{spec['name']} — visioncascade run report"
    parts = [
        f"<h1>{_e(spec['name'])}</h1>",
        f"<p class='sub'>{_e(spec['architecture'])} · {spec['input_size'][0]}×{spec['input_size'][1]} "
        f"{_e(spec['color_mode'])}{' + Sobel edges' if spec['edges'] else ''} · labels {_e(', '.join(spec['labels']))}"
        f" · data {_e(context['dataset']['name'])} ({_e(context['dataset']['fingerprint'])}) · "
        f"{_e(metrics.get('created_at', ''))}</p>",
    ]
    if metrics.get("interrupted"):
        parts.append("<p class='warn'>Training was interrupted (Ctrl-C): the best model so far was kept.</p>")
    for note in context.get("notes", []):
        parts.append(f"<p class='warn'>{_e(note)}</p>")
    parts.append("<h2>Test split</h2>")
    parts.append(
        _cards(
            [
                ("accuracy", _with_ci(test, "accuracy")),
                ("balanced accuracy", _with_ci(test, "balanced_accuracy")),
                ("ROC-AUC", _with_ci(test, "roc_auc")),
                (f"F1 of minority class '{test['minority_label']}'", _with_ci(test, "minority_f1")),
                ("log loss", _f(test["log_loss"])),
                ("ECE", _f(test["ece"])),
                ("parameters", f"{model['parameters']:,}"),
                ("model.keras size", _bytes(model["file_bytes"])),
                ("training time", f"{metrics['training_seconds']:.1f} s"),
                ("CPU latency (1 image)", f"{model['latency_ms_p50']:.2f} ms"),
            ]
        )
    )
    if test.get("ci95"):
        parts.append(_CI_NOTE)
    parts.append(_without_look_alikes(test.get("without_look_alikes"), "test images"))
    parts.append(
        "<h2>Per class</h2><div class='row'>"
        + _per_class_table(test)
        + _img(plots.get("confusion_matrix"), "confusion matrix")
        + "</div>"
    )
    parts.append("<h2>ROC and precision-recall</h2>" + _img(plots.get("roc_pr"), "ROC and PR curves"))
    parts.append("<h2>Training</h2>" + _img(plots.get("training"), "training curves"))
    final = metrics["final"]
    refit = final.get("refit")
    parts.append(
        f"<p class='muted'>First fit: best epoch {final['best_epoch'] + 1} of "
        f"{final['epochs_run']} by validation log loss "
        f"({final['best_val_loss']:.4f}); {final['images_per_second']:.0f} images/s. "
        + (
            f"Final model: refit on train + validation ({refit['images']} images) for "
            f"{refit['epochs']} epochs, {refit['seconds']:.0f} s.</p>"
            if refit
            else "The first fit is the final model.</p>"
        )
    )
    parts.append(
        f"<h2>Calibration</h2><p>Temperature {cal.get('temperature', 1.0):.3f}"
        + _prior_correction(cal)
        + ", fitted on the validation split and applied inside the model (probabilities above are "
        "calibrated).</p><div class='row'>"
        + _metric_table(
            {"uncalibrated": metrics.get("test_uncalibrated", {}), "calibrated": test},
            ("accuracy", "log_loss", "brier", "ece", "minority_f1"),
        )
        + _img(plots.get("reliability"), "reliability diagram")
        + "</div>"
    )
    cv = metrics.get("cv") or {}
    if cv.get("folds"):
        keys = ("accuracy", "balanced_accuracy", "roc_auc", "minority_f1", "log_loss", "ece")
        head = "".join(f"<th>{_e(k)}</th>" for k in keys)
        rows = "".join(
            f"<tr><td>fold {f.get('fold', i + 1)}</td>"
            + "".join(f"<td>{_f(f.get(k))}</td>" for k in keys)
            + "</tr>"
            for i, f in enumerate(cv["folds"])
        )
        rows += (
            "<tr><th>mean ± std</th>"
            + "".join(f"<th>{_f(cv['mean'][k])} ± {_f(cv['std'][k])}</th>" for k in keys)
            + "</tr>"
        )
        parts.append(
            f"<h2>Cross-validation ({len(cv['folds'])} folds on the training split)</h2>"
            f"<table><tr><th></th>{head}</tr>{rows}</table>"
        )
    parts.append(f"<h2>Settings</h2><pre>{_e(context.get('config_yaml', ''))}</pre>")
    if context["dataset"].get("attribution"):
        parts.append(f"<p class='muted'>Data: {_e(context['dataset']['attribution'])}</p>")
    return _page(title, "".join(parts))


def render_comparison_report(comparison: dict[str, Any], plots: dict[str, str]) -> str:
    """HTML for ``compare``: the two arms side by side with ratios, and each arm's curves."""
    arms = list(comparison["arms"])
    head = "".join(f"<th>{_e(a)}</th>" for a in arms)
    rows = "".join(
        f"<tr><td>{_e(r['metric'])}</td>"
        + "".join(f"<td>{_row_cell(r, i)}</td>" for i in range(len(r["values"])))
        + f"<td>{_f(r.get('ratio'), 2)}</td></tr>"
        for r in comparison["rows"]
    )
    proofs = [r for r in comparison["rows"] if "passed" in r]
    parts = [
        f"<h1>scratch vs transfer on {_e(comparison['dataset']['name'])}</h1>",
        f"<p class='sub'>Same splits, folds ({comparison['settings']['folds']}), augmentation, edges "
        f"({comparison['settings']['edges']}) and early stopping (patience {comparison['settings']['patience']}, "
        f"at most {comparison['settings']['epochs']} epochs). {_e(comparison.get('created_at', ''))}</p>",
        f"<h2>Side by side</h2><table><tr><th>metric</th>{head}<th>ratio {_e(arms[-1])}/{_e(arms[0])}</th></tr>"
        f"{rows}</table>",
        "<p class='muted'>± values are the standard deviation over CV folds; test values come from the final "
        "model of each arm on the untouched test split.</p>",
    ]
    unseen = comparison["arms"][arms[0]]["test"].get("without_look_alikes")
    if unseen:  # what the "no look-alikes" rows are
        parts.append(
            f"<p class='muted'>“No look-alikes”: on the {unseen['n']} test images left after the "
            f"{unseen['left_out']} that have an exact or near copy among the training or val images (the "
            "notes of each run's report name them).</p>"
        )
    failed = [
        f"{arm} {r['artifact']}"
        for r in proofs
        for arm, passed in zip(arms, r["passed"], strict=True)
        if passed is False
    ]
    if proofs:
        parts.append(
            "<p class='muted'>max |Δp|: the largest difference between an exported artifact's probabilities and "
            "the Keras model's on held-out frames, with the proof's limit — the proof that "
            "<code>visioncascade export</code> runs before it writes an artifact.</p>"
        )
    if failed:
        parts.append(
            f"<p><b>Failed its proof:</b> {_e(', '.join(failed))} — that artifact would not be written by "
            "<code>visioncascade export</code>, so its size above is not one you could ship as it is; a reduced "
            "precision that fails can be exported at a higher one (<code>--precision fp32</code>).</p>"
        )
    differences = comparison.get("differences")
    if differences:
        rows = "".join(
            f"<tr><td>{_e(key)}</td>"
            + "".join(
                f"<td>{_interval((comparison['arms'][a]['test'].get('ci95') or {}).get(key))}</td>"
                for a in arms
            )
            + f"<td>{_f(d['difference'])}</td><td>{_interval(d['ci95'])}</td>"
            + f"<td>{_e(_verdict(d['ci95'], arms[-1]))}</td></tr>"
            for key, d in differences["metrics"].items()
        )
        parts.append(
            "<h2>Can the test split tell them apart?</h2><table><tr><th>test metric</th>"
            + "".join(f"<th>{_e(a)} 95% CI</th>" for a in arms)
            + f"<th>{_e(differences['of'])}</th><th>95% CI of the difference</th><th></th></tr>{rows}</table>"
            f"<p class='muted'>{_e(differences['method'])} ({differences['images']} images): both arms scored on "
            "the same resamples. An interval of the difference that holds 0 means this test split cannot tell "
            "the arms apart on that metric.</p>"
        )
    for arm in arms:
        parts.append(
            f"<h2>{_e(arm)}</h2><div class='row'>{_img(plots.get(arm + '_roc_pr'), arm + ' ROC/PR')}"
            f"{_img(plots.get(arm + '_training'), arm + ' training')}</div>"
            f"<p class='muted'>Full report: <a href='{_e(arm)}/report.html'>{_e(arm)}/report.html</a></p>"
        )
    return _page("visioncascade comparison", "".join(parts))


def _verdict(interval: list[float] | None, arm: str) -> str:
    """What the interval of ``arm``'s difference says: higher, lower, or not distinguishable."""
    if not interval:
        return "undefined"
    if interval[0] > 0:
        return f"{arm} higher"
    if interval[1] < 0:
        return f"{arm} lower"
    return "not distinguishable"


def without_look_alikes_text(figures: dict[str, Any], images: str) -> str:
    """``figures`` (``without_look_alikes`` of a metrics dict) in one sentence, for the CLI and reports."""
    return (
        f"Without the {figures['left_out']} {images} that have a look-alike (an exact or near copy) among the "
        f"images the run was trained or validated on, {figures['n']} left: accuracy {_f(figures['accuracy'])}, ROC-AUC "
        f"{_f(figures['roc_auc'])}, minority F1 {_f(figures['minority_f1'])}."
    )


def _without_look_alikes(figures: dict[str, Any] | None, images: str) -> str:
    return f"<p>{_e(without_look_alikes_text(figures, images))}</p>" if figures else ""


def render_evaluation_report(spec: dict[str, Any], metrics: dict[str, Any], plots: dict[str, str]) -> str:
    """HTML for ``visioncascade evaluate``: headline metrics, per-class table and curves."""
    data = metrics["data"]
    parts = [
        f"<h1>{_e(spec['name'])} on {_e(data['name'])}</h1>",
        f"<p class='sub'>split(s) {_e(', '.join(data['splits']))} · {metrics['n']} images · "
        f"{_e(metrics.get('created_at', ''))}</p>",
        *[f"<p class='warn'>{_e(n)}</p>" for n in data.get("notes", [])],
        _cards(
            [
                ("accuracy", _with_ci(metrics, "accuracy")),
                ("balanced accuracy", _with_ci(metrics, "balanced_accuracy")),
                ("ROC-AUC", _with_ci(metrics, "roc_auc")),
                (f"F1 of minority class '{metrics['minority_label']}'", _with_ci(metrics, "minority_f1")),
                ("log loss", _f(metrics["log_loss"])),
                ("ECE", _f(metrics["ece"])),
            ]
        ),
        _CI_NOTE if metrics.get("ci95") else "",
        _without_look_alikes(metrics.get("without_look_alikes"), "images evaluated"),
        "<h2>Per class</h2><div class='row'>"
        + _per_class_table(metrics)
        + _img(plots.get("confusion_matrix"), "confusion matrix")
        + "</div>",
        "<h2>Curves</h2><div class='row'>"
        + _img(plots.get("roc_pr"), "ROC and PR")
        + _img(plots.get("reliability"), "reliability")
        + "</div>",
    ]
    return _page(f"{spec['name']} evaluation", "".join(parts))
