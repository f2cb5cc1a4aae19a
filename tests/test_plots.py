"""Report plots: every plot renders class names in any script, and passes no warning on to the user."""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np
from PIL import Image

from visioncascade.evaluate import plots

LABELS = ("café au lait", "日本 vertical", "x")  # a CJK name: DejaVu Sans has no glyph for it


def _image(png: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(png)))


def test_plots_of_class_names_in_any_script_render_without_warnings():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    p = rng.dirichlet(np.ones(3), 60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "Glyph ... missing" would reach a --quiet user
        pngs = [
            plots.confusion_matrix_png([[5, 1, 0], [2, 4, 1], [0, 0, 7]], LABELS),
            plots.roc_pr_png(y, p, LABELS),
            plots.reliability_png(y, {"calibrated": p}),
            plots.training_curves_png({"final": {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8]}}, best_epoch=1),
        ]
    for png in pngs:
        image = _image(png)
        assert image.format == "PNG" and min(image.size) > 100
