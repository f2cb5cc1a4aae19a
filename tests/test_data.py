"""Datasets, splits, image preparation and the augmentation pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visioncascade.data import load_dataset, prepare_image, resolve_splits, stratified_folds
from visioncascade.errors import DataError

from synthetic import write_shape_folder


def test_bundled_breastmnist_has_official_splits_and_names():
    ds = load_dataset("breastmnist")
    assert ds.labels == ("malignant", "normal_benign")
    assert ds.class_counts("train") == {"malignant": 147, "normal_benign": 399}
    assert ds.class_counts("val") == {"malignant": 21, "normal_benign": 57}
    assert ds.class_counts("test") == {"malignant": 42, "normal_benign": 114}
    assert ds.native_size == (28, 28) and ds.native_color_mode == "grayscale"
    assert "CC BY 4.0" in ds.attribution
    assert ds.fingerprint() == load_dataset("breastmnist").fingerprint()


def test_folder_with_mixed_sizes_formats_and_channels(shapes_folder: Path):
    ds = load_dataset(shapes_folder)
    assert ds.labels == ("horizontal", "vertical")
    assert ds.class_counts() == {"horizontal": 20, "vertical": 40}
    assert {img.shape[:2] for img in ds.splits["train"].images} != {(40, 40)}  # sizes really vary
    assert ds.native_color_mode == "rgb"  # some images are RGB
    x, y = ds.arrays("train", (32, 32), "grayscale")
    assert x.shape == (60, 32, 32, 1) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [20, 40]


def test_rgba_palette_and_16bit_images_are_converted(tmp_path: Path):
    root = tmp_path / "d"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
    Image.new("RGBA", (10, 12), (10, 20, 30, 128)).save(root / "a" / "rgba.png")
    Image.new("P", (10, 12)).save(root / "a" / "palette.png")
    Image.fromarray(np.full((9, 9), 4000, dtype=np.uint16)).save(root / "b" / "deep.png")
    Image.new("L", (5, 5), 7).save(root / "b" / "gray.png")
    ds = load_dataset(root)
    shapes = sorted(img.shape for img in ds.splits["train"].images)
    assert shapes == [(5, 5), (9, 9), (12, 10, 3), (12, 10, 3)]
    assert ds.native_color_mode == "rgb"


def test_corrupt_images_are_skipped_with_a_warning(tmp_path: Path):
    root = write_shape_folder(tmp_path / "d", {"horizontal": 30, "vertical": 30}, mixed=False)
    (root / "vertical" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "vertical" / "notes.txt").write_text("not an image")
    ds = load_dataset(root)
    assert len(ds.splits["train"]) == 60
    text = " ".join(ds.warnings)
    assert "broken.png" in text and "skipped 1 unreadable" in text and "non-image" in text
    assert text.count("broken.png") == 1, text  # Pillow's own message names the file again
    assert "cannot identify image file" in text  # ... and says why: that part is kept


def test_too_many_corrupt_images_fail(tmp_path: Path):
    root = write_shape_folder(tmp_path / "d", {"horizontal": 5, "vertical": 5}, mixed=False)
    for i in range(3):
        (root / "horizontal" / f"bad{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"3 of 13 images .* unreadable"):
        load_dataset(root)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no dataset at"),
        (lambda p: (p.mkdir(), p)[1], "has no class sub-folders"),
        (lambda p: ((p / "a").mkdir(parents=True), (p / "b").mkdir(), p)[2], "no readable training images"),
        (lambda p: (write_shape_folder(p, {"horizontal": 3}), p)[1], "at least 2 classes"),
        (lambda p: (p.write_text("x"), p)[1], "not a .npz"),
    ],
    ids=["missing", "empty", "empty-classes", "one-class", "plain-file"],
)
def test_bad_data_sources_fail_clearly(tmp_path: Path, make, message):
    with pytest.raises(DataError, match=message):
        load_dataset(make(tmp_path / "data"))


def test_npz_errors_and_label_shapes(tmp_path: Path):
    images = np.zeros((6, 8, 8), np.uint8)
    labels = np.array([[0], [1], [0], [1], [0], [1]], np.uint8)
    good = tmp_path / "good.npz"
    np.savez(good, train_images=images, train_labels=labels, label_names=np.array(["cat", "dog"]))
    ds = load_dataset(good)
    assert ds.labels == ("cat", "dog") and ds.splits["train"].labels.shape == (6,)
    np.savez(tmp_path / "nokeys.npz", images=images)
    with pytest.raises(DataError, match=r"lacks \['train_images', 'train_labels'\].*it has \['images'\]"):
        load_dataset(tmp_path / "nokeys.npz")
    np.savez(tmp_path / "mismatch.npz", train_images=images, train_labels=labels[:4])
    with pytest.raises(DataError, match="6 images but train_labels has 4 labels"):
        load_dataset(tmp_path / "mismatch.npz")
    np.savez(tmp_path / "half.npz", train_images=images, train_labels=labels, test_images=images)
    with pytest.raises(DataError, match="test_images but not test_labels"):
        load_dataset(tmp_path / "half.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK nonsense")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(tmp_path / "corrupt.npz")


def test_missing_splits_are_stratified_holdouts_and_deterministic(shapes_folder: Path):
    ds = load_dataset(shapes_folder)
    a, notes = resolve_splits(ds, seed=3)
    b, _ = resolve_splits(ds, seed=3)
    assert set(a.splits) == {"train", "val", "test"}
    assert len(notes) == 2 and "held out" in notes[0]
    assert a.class_counts("test") == {"horizontal": 4, "vertical": 8}  # 20 % of each class
    assert sum(len(s) for s in a.splits.values()) == 60
    for name in a.splits:
        assert np.array_equal(a.splits[name].labels, b.splits[name].labels)
        assert all(
            np.array_equal(p, q) for p, q in zip(a.splits[name].images, b.splits[name].images, strict=True)
        )


def test_official_splits_are_kept():
    ds, notes = resolve_splits(load_dataset("breastmnist"))
    assert notes == [] and len(ds.splits["test"]) == 156


def test_folds_are_stratified_and_refuse_tiny_classes():
    labels = np.array([0] * 10 + [1] * 30)
    folds = stratified_folds(labels, 5, seed=0)
    assert len(folds) == 5
    for train, val in folds:
        assert np.bincount(labels[val]).tolist() == [2, 6]
        assert not set(train) & set(val)
    with pytest.raises(DataError, match=r"class 'rare' has only 3 image\(s\).*use --folds 3 or fewer"):
        stratified_folds(np.array([0] * 3 + [1] * 30), 5, seed=0, label_names=("rare", "common"))


def test_prepare_image_converts_colour_and_size():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 255
    gray = prepare_image(rgb, (10, 15), "grayscale")
    assert gray.shape == (10, 15, 1) and abs(int(gray[0, 0, 0]) - 76) <= 1  # 0.299 * 255
    up = prepare_image(np.full((4, 4), 9, np.uint8), (8, 8), "rgb")
    assert up.shape == (8, 8, 3) and (up == 9).all()


def test_prepare_image_accepts_opencv_bgr_frames():
    rgb = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    for mode in ("rgb", "grayscale"):
        np.testing.assert_array_equal(
            prepare_image(bgr, (6, 8), mode, channel_order="bgr"), prepare_image(rgb, (6, 8), mode)
        )
