"""Helpers of the export tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

PARITY_IMAGES = 40  # held-out images -> 120 app frames (gray, RGB camera, BGR OpenCV), 80 distinct inputs


def write_rgb_folder(root: Path, per_class: int = 20, seed: int = 0) -> Path:
    """A tiny RGB folder dataset of coloured bars at mixed sizes (two classes)."""
    rng = np.random.default_rng(seed)
    for label in ("horizontal", "vertical"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            side = int(rng.integers(30, 44))
            img = rng.normal(70, 25, (side, side, 3))
            lo, hi = side // 3, 2 * side // 3
            colour = rng.uniform(80, 170, 3)
            if label == "horizontal":
                img[lo:hi, 2:-2] += colour
            else:
                img[2:-2, lo:hi] += colour
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / label / f"{i}.png")
    return root


def make_run_folder(
    root: Path,
    data: Path | str,
    arch: str,
    size: int,
    color_mode: str,
    edges: bool,
    seed: int = 0,
    temperature: float = 0.25,
    offsets: bool = True,
    **params,
) -> Path:
    """A run folder (model.keras, spec.json, config.yaml) around an untrained registry model.

    Parity does not care whether a model is trained, only that artifacts compute what it computes; an
    untrained model with a low temperature still gives spread-out probabilities. ``offsets`` puts
    calibration offsets (the prior correction) into the softmax too, so that every artifact must carry them.
    """
    import keras

    from visioncascade.data import load_dataset
    from visioncascade.models import create_model, save_model
    from visioncascade.spec import ModelSpec

    dataset = load_dataset(data)
    keras.utils.set_random_seed(seed)
    channels = 1 if color_mode == "grayscale" else 3
    model = create_model(
        arch, input_shape=(size, size, channels), num_classes=dataset.num_classes, edges=edges, **params
    )
    model.get_layer("probabilities").set_temperature(temperature)
    logit_offsets = tuple(np.linspace(0.6, -0.6, dataset.num_classes)) if offsets else ()
    if logit_offsets:
        model.get_layer("probabilities").set_offsets(logit_offsets)
    root.mkdir(parents=True, exist_ok=True)
    save_model(model, root / "model.keras")
    spec = ModelSpec(
        name=f"{dataset.name}-{arch}",
        labels=dataset.labels,
        input_size=(size, size),
        color_mode=color_mode,  # type: ignore[arg-type]
        architecture=arch,
        edges=edges,
        temperature=temperature,
        logit_offsets=logit_offsets,
    )
    spec.save(root / "spec.json")
    (root / "config.yaml").write_text(
        yaml.safe_dump({"data": str(data), "train": {"seed": seed}}), encoding="utf-8"
    )
    return root
