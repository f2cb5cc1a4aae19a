"""Plots for reports, rendered headless to base64 PNG so pages are self-contained."""

from __future__ import annotations

import base64
import functools
import io
import warnings
from collections.abc import Callable
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

__all__ = [
    "confusion_matrix_png",
    "reliability_png",
    "roc_pr_png",
    "training_curves_png",
]

_COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"]

#: Fonts with Chinese, Japanese and Korean glyphs, tried after DejaVu Sans (matplotlib's own, which has none)
#: for class names in those scripts; only the ones installed are named, so matplotlib looks for no other.
_WIDE_FONTS = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Source Han Sans",
    "Hiragino Sans",
    "PingFang SC",
    "Microsoft YaHei",
    "Malgun Gothic",
    "Arial Unicode MS",
)

_F = TypeVar("_F", bound=Callable[..., str])


@functools.cache
def _font_rc() -> dict[str, object]:
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return {
        "font.family": ["sans-serif"],
        "font.sans-serif": ["DejaVu Sans", *(name for name in _WIDE_FONTS if name in installed)],
    }


def _plot(func: _F) -> _F:
    """Draw with the fonts above. Where none has a class name's glyphs, the plot shows boxes for them and
    the page's tables the name itself: matplotlib's "Glyph … missing" warning is not passed on."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context(_font_rc()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from", category=UserWarning)
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@_plot
def training_curves_png(histories: dict[str, dict[str, list[float]]], best_epoch: int | None = None) -> str:
    """Loss and accuracy per epoch; the first history is drawn bold, the others (folds) thin."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, hist) in enumerate(histories.items()):
        bold = i == 0
        width, alpha = (2.0, 1.0) if bold else (0.8, 0.45)
        epochs = np.arange(1, len(hist.get("loss", [])) + 1)
        for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
            if key in hist:
                ax.plot(
                    epochs,
                    hist[key],
                    color=_COLORS[0],
                    lw=width,
                    alpha=alpha,
                    ls="--",
                    label=f"{name} train" if bold else None,
                )
            if f"val_{key}" in hist:
                ax.plot(
                    epochs,
                    hist[f"val_{key}"],
                    color=_COLORS[1],
                    lw=width,
                    alpha=alpha,
                    label=f"{name} validation" if bold else None,
                )
    for ax, title in zip(axes, ("log loss", "accuracy"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if best_epoch is not None and best_epoch >= 0:
            ax.axvline(best_epoch + 1, color="#6b7280", ls=":", lw=1)
    axes[0].legend(fontsize=8)
    return _png(fig)


@_plot
def confusion_matrix_png(matrix: list[list[int]], labels: tuple[str, ...]) -> str:
    """Counts with row-normalised shading (rows = true class)."""
    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.7 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(cm):
        ax.text(
            j,
            i,
            f"{int(value)}\n{norm[i, j]:.0%}",
            ha="center",
            va="center",
            color="white" if norm[i, j] > 0.5 else "black",
            fontsize=9,
        )
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _png(fig)


@_plot
def roc_pr_png(y_true: np.ndarray, probabilities: np.ndarray, labels: tuple[str, ...]) -> str:
    """One-vs-rest ROC and precision-recall curves per class (binary: the minority-relevant both)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for c, label in enumerate(labels):
        positive = y_true == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, probabilities[:, c])
        precision, recall, _ = precision_recall_curve(positive, probabilities[:, c])
        color = _COLORS[c % len(_COLORS)]
        axes[0].plot(fpr, tpr, color=color, label=label)
        axes[1].plot(recall, precision, color=color, label=label)
        axes[1].axhline(positive.mean(), color=color, ls=":", lw=0.8)
    axes[0].plot([0, 1], [0, 1], color="#9ca3af", ls="--", lw=0.8)
    axes[0].set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    axes[1].set(title="precision-recall", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


@_plot
def reliability_png(y_true: np.ndarray, curves: dict[str, np.ndarray], bins: int = 10) -> str:
    """Reliability diagram of top-class confidence vs accuracy for each named set of probabilities."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    edges = np.linspace(0, 1, bins + 1)
    for i, (name, probs) in enumerate(curves.items()):
        conf = probs.max(axis=1)
        correct = probs.argmax(axis=1) == y_true
        xs, ys = [], []
        for low, high in itertools.pairwise(edges):
            mask = (conf > low) & (conf <= high)
            if mask.any():
                xs.append(conf[mask].mean())
                ys.append(correct[mask].mean())
        ax.plot(xs, ys, marker="o", color=_COLORS[i % len(_COLORS)], label=name)
    ax.plot([0, 1], [0, 1], color="#9ca3af", ls="--", lw=0.8, label="perfect")
    ax.set(
        xlabel="confidence (top probability)",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="reliability",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
