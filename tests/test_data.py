"""Datasets, splits, image preparation and the augmentation pipeline."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from visioncascade.data import (
    MAX_SHORT_SIDE,
    duplicate_notes,
    load_cap,
    load_dataset,
    prepare_image,
    read_image,
    resolve_splits,
    stratified_folds,
)
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


def test_an_archive_unzipped_from_a_mac_loads_as_its_classes(tmp_path: Path):
    """Zipping class folders on a Mac adds ``__MACOSX/<class>/._<name>`` (not images) beside them; other
    tools leave hidden folders (``.thumbnails``) inside a class. None of them is a class or an image."""
    root = write_shape_folder(tmp_path / "d", {"horizontal": 6, "vertical": 5}, mixed=False)
    for label in ("horizontal", "vertical"):
        for image in (root / label).iterdir():
            apple = root / "__MACOSX" / label / f"._{image.name}"
            apple.parent.mkdir(parents=True, exist_ok=True)
            apple.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (root / "vertical" / ".thumbnails").mkdir()
    (root / "vertical" / ".thumbnails" / "small.png").write_bytes(b"\x89PNG broken")
    (root / "horizontal" / "__MACOSX").mkdir()
    (root / "horizontal" / "__MACOSX" / "._x.png").write_bytes(b"\x00\x05")
    ds = load_dataset(root, max_bad_fraction=0.0)
    assert ds.labels == ("horizontal", "vertical")
    assert ds.class_counts() == {"horizontal": 6, "vertical": 5} and ds.warnings == []


def test_read_images_decodes_ahead_in_order_with_errors_in_place(tmp_path: Path):
    from visioncascade.data import read_images

    root = write_shape_folder(tmp_path / "d", {"horizontal": 9}, mixed=True, size=80)
    files = sorted((root / "horizontal").iterdir())
    (root / "broken.png").write_bytes(b"not a png")
    paths = [*files[:4], root / "broken.png", tmp_path / "gone.jpg", *files[4:]]
    got = list(read_images(paths, max_short_side=50, workers=3))
    assert [path for path, _, _ in got] == paths
    for path, image, why in got:
        if path.name in ("broken.png", "gone.jpg"):
            assert image is None and why.startswith(f"cannot read image {path}: ")
        else:
            assert why == "" and np.array_equal(image, read_image(path, 50))
    first = read_images(paths, workers=2)
    assert next(first)[0] == paths[0]
    first.close()  # stops early: the decodes not started are cancelled, nothing raises


def test_reading_a_folder_reports_progress_per_file(tmp_path: Path):
    root = write_shape_folder(tmp_path / "d", {"horizontal": 6, "vertical": 5}, mixed=False)
    (root / "vertical" / "broken.png").write_bytes(b"not a png")  # read (and skipped) like the others
    calls: list[tuple[int, int]] = []
    ds = load_dataset(root, max_bad_fraction=0.5, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 12) for i in range(1, 13)] and len(ds.splits["train"]) == 11
    assert load_dataset("breastmnist", progress=lambda *_: calls.append((-1, -1))).num_classes == 2
    assert calls[-1] == (12, 12)  # a .npz is not read file by file: no calls


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
    (deep,) = [img for img in ds.splits["train"].images if img.shape == (9, 9)]
    assert (deep == 16).all()  # 4000 / 257, as watch, predict and the live page read it; not stretched to 255


def _marked_jpeg(path: Path, orientation: int | None, exif: bytes | None = None) -> np.ndarray:
    """A 20x30 landscape JPEG whose stored pixels have a white top-left corner; returns those pixels."""
    stored = np.full((20, 30, 3), 40, np.uint8)
    stored[:6, :6] = 255
    img = Image.fromarray(stored)
    if exif is None:
        tags = img.getexif()
        if orientation is not None:
            tags[0x0112] = orientation
        exif = tags.tobytes()
    img.save(path, "JPEG", quality=100, exif=exif)
    with warnings.catch_warnings():  # Pillow warns about a corrupt EXIF block, as a test here wants
        warnings.simplefilter("ignore")
        return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_opencv_and_viewers_do(tmp_path: Path, orientation: int):
    path = tmp_path / f"phone-{orientation}.jpg"
    stored = _marked_jpeg(path, orientation)
    upright = read_image(path)
    # OpenCV applies the tag too (cv2.imread, and cv2.imdecode for the live page's frames): training,
    # evaluation and every runtime source must see the same pixels as the live page does.
    np.testing.assert_array_equal(upright, cv2.imread(str(path))[..., ::-1])
    if orientation in (5, 6, 7, 8):  # a quarter turn: portrait
        assert upright.shape == (30, 20, 3)
    else:
        assert upright.shape == (20, 30, 3)
    if orientation == 1:
        np.testing.assert_array_equal(upright, stored)
    if orientation == 6:  # "rotate 90 degrees clockwise to display": the white corner is now top-right
        assert upright[0, -1].min() > 200 and upright[0, 0].max() < 100


def test_an_image_past_pillows_pixel_limit_is_an_unreadable_image(tmp_path: Path, monkeypatch):
    # Pillow refuses images over twice Image.MAX_IMAGE_PIXELS (~179 MP) with DecompressionBombError,
    # which is no OSError: it must become a DataError, not a traceback. The limit is lowered to test it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("L", (60, 60)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match=r"cannot read image .*big.png: Image size \(3600 pixels\)"):
        read_image(tmp_path / "big.png")


def test_unreadable_exif_leaves_the_image_as_stored(tmp_path: Path):
    path = tmp_path / "odd.jpg"
    stored = _marked_jpeg(path, None, exif=b"Exif\x00\x00MM\x00*garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own "Corrupt EXIF data" warning, shown once by default
        np.testing.assert_array_equal(read_image(path), stored)
    ds_root = tmp_path / "d"
    for label in ("a", "b"):
        (ds_root / label).mkdir(parents=True)
        for i in range(2):
            _marked_jpeg(ds_root / label / f"{i}.jpg", 6)
    ds = load_dataset(ds_root)
    assert {img.shape for img in ds.splits["train"].images} == {(30, 20, 3)}


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth photo-like RGB content (a blurred random field), as a camera gives it."""
    small = np.random.default_rng(seed).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def test_large_photos_are_kept_reduced_and_give_nearly_the_same_model_input(tmp_path: Path):
    root = tmp_path / "d"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        Image.fromarray(_photo(1200, 1600, seed=1 if label == "a" else 2)).save(root / label / "big.jpg")
        Image.fromarray(_photo(40, 50, seed=3)).save(root / label / "small.png")
    portrait = Image.fromarray(_photo(900, 1800, seed=4))  # stored landscape, shown portrait
    tags = portrait.getexif()
    tags[0x0112] = 6
    portrait.save(root / "b" / "phone.jpg", quality=95, exif=tags.tobytes())

    kept = load_dataset(root)  # MAX_SHORT_SIDE: 512
    full = load_dataset(root, max_short_side=None)
    shapes = {img.shape for img in kept.splits["train"].images}
    assert shapes == {(512, 683, 3), (40, 50, 3), (1024, 512, 3)}  # aspect kept, upright, small as is
    assert {img.shape for img in full.splits["train"].images} == {
        (1200, 1600, 3),
        (40, 50, 3),
        (1800, 900, 3),
    }
    for size in (64, 128):  # what the model is given: within 2 levels of the full photo's input
        x_kept, y_kept = kept.arrays("train", (size, size), "rgb")
        x_full, y_full = full.arrays("train", (size, size), "rgb")
        np.testing.assert_array_equal(y_kept, y_full)
        diff = np.abs(x_kept.astype(int) - x_full.astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.3, (size, diff.max(), diff.mean())
    # The fingerprint is of the files, not of the pixels kept: the same whatever the reduction.
    assert kept.fingerprint() == full.fingerprint() == load_dataset(root, max_short_side=900).fingerprint()
    Image.fromarray(_photo(40, 50, seed=5)).save(root / "a" / "small.png")
    assert load_dataset(root).fingerprint() != kept.fingerprint()


def test_the_load_cap_leaves_room_for_the_model_input():
    assert load_cap(None) == load_cap(96) == load_cap([None, 128]) == MAX_SHORT_SIDE == 512
    assert load_cap(224) == 896 and load_cap((28, 300)) == 1200 and load_cap([None, 160]) == 640


DATA = Path(__file__).parent / "data"


def test_heic_and_avif_photos_are_read_upright(tmp_path: Path):
    # tests/data/phone*.heic: a 64x48 picture, white top-left and red top-right corners, written by
    # pillow-heif 1.8.1 (quality 95); phone-portrait.heic with EXIF orientation 6, which it stores as HEIF's
    # own rotation (irot), as an iPhone does. pi-heif decodes both (libheif applies the rotation).
    plain = read_image(DATA / "phone.heic")
    assert plain.shape == (48, 64, 3)
    np.testing.assert_allclose(plain[0, 0], [255, 255, 255], atol=8)
    np.testing.assert_allclose(plain[0, -1], [220, 30, 30], atol=12)
    portrait = read_image(DATA / "phone-portrait.heic")
    assert portrait.shape == (64, 48, 3)  # turned a quarter clockwise: top-left is now top-right
    np.testing.assert_allclose(portrait[0, -1], [255, 255, 255], atol=8)
    np.testing.assert_allclose(portrait[-1, -1], [220, 30, 30], atol=12)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for name in ("phone.heic", "phone-portrait.heic"):
            shutil.copy(DATA / name, tmp_path / label / name.replace(".heic", ".HEIC"))
    Image.fromarray(_photo(30, 40, seed=6)).save(tmp_path / "a" / "android.avif", quality=90)  # Pillow's own
    ds = load_dataset(tmp_path)
    shapes = sorted(img.shape for img in ds.splits["train"].images)
    assert shapes == [(30, 40, 3)] + [(48, 64, 3)] * 2 + [(64, 48, 3)] * 2
    assert not ds.warnings


def test_heic_without_pi_heif_says_what_to_install(tmp_path: Path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        shutil.copy(DATA / "phone.heic", tmp_path / label / "IMG_0001.heic")
    script = (
        "import sys; sys.modules['pi_heif'] = None  # as if the [heic] extra were not installed\n"
        "from visioncascade.data import load_dataset\n"
        f"load_dataset({str(tmp_path)!r})"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert "2 of 2 images" in result.stderr and "are unreadable" in result.stderr
    assert "HEIC/HEIF images need the optional pi-heif package" in result.stderr
    assert (
        "pip install 'visioncascade[heic]'" in result.stderr and "convert the images to JPEG" in result.stderr
    )
    # One reason for both files, said once.
    assert result.stderr.count("HEIC/HEIF images need") == 1 and "(1 more like it, e.g. " in result.stderr


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
    assert "BytesIO" not in text  # nor the in-memory copy of the file's bytes


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
    with open(tmp_path / "one.npz", "wb") as f:  # np.save into a file named .npz: one array, no keys
        np.save(f, images)
    with pytest.raises(DataError, match=r"one\.npz holds one array, not a \.npz archive"):
        load_dataset(tmp_path / "one.npz")
    empty = np.zeros((0, 8, 8), np.uint8)
    np.savez(tmp_path / "empty.npz", train_images=empty, train_labels=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="train_images holds no images"):
        load_dataset(tmp_path / "empty.npz")
    np.savez(  # no training images, but val and test: not a traceback from the class count either
        tmp_path / "notrain.npz",
        train_images=empty,
        train_labels=np.zeros(0, np.int64),
        test_images=images,
        test_labels=labels,
    )
    with pytest.raises(DataError, match="train_images holds no images"):
        load_dataset(tmp_path / "notrain.npz")


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


def test_official_splits_are_kept_and_their_one_cross_split_copy_is_noted():
    ds, notes = resolve_splits(load_dataset("breastmnist"))
    assert len(ds.splits["test"]) == 156 and notes == []
    # BreastMNIST's official test[76] has the very pixels of train[115], under the other label.
    np.testing.assert_array_equal(ds.splits["test"].images[76], ds.splits["train"].images[115])
    notes = duplicate_notes(ds.splits, ds.labels)
    assert notes[:2] == [
        "1 test image is an exact copy of a training or val image (test[76] = train[115]): the test metrics "
        "count it as unseen; remove the copies to measure on unseen images",
        "1 exact copy carries another label than the image copied (test[76] 'normal_benign' = train[115] "
        "'malignant'): one of each pair is mislabelled, or the classes cannot be told apart",
    ]
    # And near copies: 38 % of the test images (and 40 % of val) have a look-alike among the images trained
    # on. BreastMNIST's source, BUSI, holds duplicated images (Pawłowska et al., Data in Brief 48, 109247).
    assert notes[2:] == [
        "31 val images look nearly the same as training images (val[1] ≈ train[413]; val[2] ≈ train[498]; "
        "val[3] ≈ train[545]; and 28 more; 32x32 px thumbnails within 8 of 255, root mean square): a copy "
        "saved again, resized or retouched, or the same scene twice; early stopping and calibration fit to them",
        "59 test images look nearly the same as training or val images (test[2] ≈ train[146]; test[7] ≈ "
        "train[481]; test[8] ≈ train[42]; and 56 more; 32x32 px thumbnails within 8 of 255, root mean square): "
        "a copy saved again, resized or retouched, or the same scene twice; the test metrics count them as "
        "unseen; 4 of them carry another label than the look-alike",
        "2 pairs of training images look nearly the same but carry different labels (train[292] "
        "'normal_benign' ≈ train[492] 'malignant'; train[325] 'normal_benign' ≈ train[492] 'malignant'; 32x32 "
        "px thumbnails within 8 of 255, root mean square): one of each pair is mislabelled, or the classes "
        "cannot be told apart",
    ]


def test_copies_across_splits_and_labels_are_noted_by_file_name(tmp_path: Path):
    root = tmp_path / "d"
    for split, n, seed in (("train", 12, 1), ("val", 4, 2), ("test", 4, 3)):
        write_shape_folder(root / split, {"horizontal": n, "vertical": n}, mixed=False, seed=seed)
    shutil.copy(root / "train" / "horizontal" / "3.png", root / "test" / "horizontal" / "copy.png")
    shutil.copy(root / "train" / "vertical" / "7.png", root / "val" / "vertical" / "7.png")
    shutil.copy(root / "train" / "vertical" / "8.png", root / "val" / "vertical" / "8.png")
    shutil.copy(root / "train" / "horizontal" / "5.png", root / "train" / "vertical" / "also-5.png")
    ds, notes = resolve_splits(load_dataset(root))
    assert notes == []  # every split is given: nothing held out
    assert duplicate_notes(ds.splits, ds.labels) == [
        "2 val images are exact copies of training images (val/vertical/7.png = train/vertical/7.png; "
        "val/vertical/8.png = train/vertical/8.png): early stopping and calibration fit to them; remove the "
        "copies to measure on unseen images",
        "1 test image is an exact copy of a training or val image (test/horizontal/copy.png = "
        "train/horizontal/3.png): the test metrics count it as unseen; remove the copies to measure on unseen "
        "images",
        "1 exact copy carries another label than the image copied (train/vertical/also-5.png 'vertical' = "
        "train/horizontal/5.png 'horizontal'): one of each pair is mislabelled, or the classes cannot be told "
        "apart",
    ]


def test_near_copies_a_photo_saved_again_resized_or_retouched_are_noted(tmp_path: Path):
    rng = np.random.default_rng(0)
    root = tmp_path / "d"
    for split, n in (("train", 12), ("val", 4), ("test", 4)):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for i in range(n):  # distinct photo-like images: smooth colour fields
                small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
                photo = cv2.resize(small, (160, 120), interpolation=cv2.INTER_CUBIC)
                Image.fromarray(photo).save(root / split / label / f"{i}.png")
    original = Image.open(root / "train" / "cat" / "3.png")
    original.save(root / "test" / "cat" / "resaved.jpg", quality=60)  # another format and quality
    original.resize((100, 75), Image.BILINEAR).save(root / "test" / "cat" / "small.png")  # resized
    brighter = np.clip(np.asarray(Image.open(root / "train" / "dog" / "5.png"), np.int16) + 6, 0, 255)
    Image.fromarray(brighter.astype(np.uint8)).save(root / "test" / "cat" / "retouched.png")  # relabelled
    shutil.copy(root / "train" / "dog" / "7.png", root / "val" / "dog" / "copy.png")  # exact: noted once
    original.save(root / "train" / "dog" / "cat-3.jpg", quality=70)  # a training look-alike, other label
    ds, _ = resolve_splits(load_dataset(root))
    assert duplicate_notes(ds.splits, ds.labels) == [
        "1 val image is an exact copy of a training image (val/dog/copy.png = train/dog/7.png): early "
        "stopping and calibration fit to it; remove the copies to measure on unseen images",
        "3 test images look nearly the same as training or val images (test/cat/resaved.jpg ≈ train/cat/3.png; "
        "test/cat/retouched.png ≈ train/dog/5.png; test/cat/small.png ≈ train/cat/3.png; 32x32 px thumbnails "
        "within 8 of 255, root mean square): a copy saved again, resized or retouched, or the same scene "
        "twice; the test metrics count them as unseen; 1 of them carries another label than the look-alike",
        "2 training images look nearly the same but carry different labels (train/cat/3.png 'cat' ≈ "
        "train/dog/cat-3.jpg 'dog'; 32x32 px thumbnails within 8 of 255, root mean square): one of each pair is "
        "mislabelled, or the classes cannot be told apart",
    ]


def test_near_copies_are_found_at_scale_as_a_direct_search_finds_them():
    """The coarse pass drops no pair a direct search keeps (its bound is exact), on many images."""
    from visioncascade.data.splits import NEAR_COPY_RMS, _nearest_within, _pairs_within

    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (700, 32, 32, 3)).astype(np.float32)
    reference[:, :, :16] = reference[:, :, :16] * 0.1 + 100  # a low-contrast half: nearer neighbours
    query = reference[rng.choice(700, 300)] + rng.normal(
        0, rng.uniform(1, 12, (300, 1, 1, 1)), (300, 32, 32, 3)
    )
    query = query.astype(np.float32)
    flat = reference.reshape(700, -1)
    direct = np.stack([np.sqrt(np.square(flat - q.ravel()).mean(axis=1)) for q in query])
    want = [(i, int(row.argmin())) for i, row in enumerate(direct) if row.min() <= NEAR_COPY_RMS]
    assert 50 < len(want) < 250  # both sides of the limit are exercised
    assert _nearest_within(query, reference, NEAR_COPY_RMS) == want
    pairs = np.concatenate([reference[:300], query])  # and every near pair among many, as directly found
    flat = pairs.reshape(len(pairs), -1)
    want_pairs = [
        (i, int(j))
        for i in range(len(pairs))
        for j in np.flatnonzero(np.sqrt(np.square(flat[i + 1 :] - flat[i]).mean(axis=1)) <= NEAR_COPY_RMS)
        + i
        + 1
    ]
    assert len(want_pairs) > 50 and _pairs_within(pairs, NEAR_COPY_RMS) == want_pairs


def test_no_copies_no_notes(shapes_folder: Path):
    ds, _ = resolve_splits(load_dataset(shapes_folder), seed=3)
    assert duplicate_notes(ds.splits, ds.labels) == []


def test_folds_are_stratified_and_refuse_tiny_classes():
    labels = np.array([0] * 10 + [1] * 30)
    folds = stratified_folds(labels, 5, seed=0)
    assert len(folds) == 5
    for train, val in folds:
        assert np.bincount(labels[val]).tolist() == [2, 6]
        assert not set(train) & set(val)
    with pytest.raises(DataError, match=r"class 'rare' has only 3 image\(s\).*use --folds 3 or fewer"):
        stratified_folds(np.array([0] * 3 + [1] * 30), 5, seed=0, label_names=("rare", "common"))
    # One image: no number of folds works, so the advice is not "--folds 2", which would fail the same way.
    with pytest.raises(DataError, match=r"only 1 image\(s\).*use --folds 0 to skip cross-validation") as info:
        stratified_folds(np.array([0] * 1 + [1] * 30), 5, seed=0, label_names=("rare", "common"))
    assert "use --folds 2" not in str(info.value)


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
