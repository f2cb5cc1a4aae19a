"""Datasets: class folders, MedMNIST-style ``.npz`` files and bundled samples.

Every loader returns a :class:`Dataset` of uint8 images (at their own size and channel count, a folder's
large photos reduced: see :data:`MAX_SHORT_SIDE`) and integer labels per split. :meth:`Dataset.arrays`
turns a split into model-ready ``(N, H, W, C)`` uint8 arrays.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from visioncascade.data.images import IMAGE_SUFFIXES, _read, _unreadable, prepare_image
from visioncascade.errors import DataError

__all__ = [
    "BUNDLED",
    "MAX_SHORT_SIDE",
    "Dataset",
    "Split",
    "check_source",
    "data_reference",
    "load_cap",
    "load_dataset",
    "locate_run_data",
]

SPLIT_NAMES = ("train", "val", "test")

#: A folder's images are kept with their shorter side at most this long (reduced on load, aspect kept):
#: 1 MB a photo instead of 36 MB for a 12-megapixel one. Model inputs above a quarter of it raise the
#: limit (:func:`load_cap`).
MAX_SHORT_SIDE = 512

BUNDLED: dict[str, dict] = {
    "breastmnist": {
        "file": "breastmnist.npz",
        "labels": ("malignant", "normal_benign"),
        "attribution": (
            "BreastMNIST (MedMNIST v2), CC BY 4.0. Yang et al., 'MedMNIST v2 - A large-scale lightweight "
            "benchmark for 2D and 3D biomedical image classification', Scientific Data 10:41 (2023). "
            "Source images: Al-Dhabyani et al., 'Dataset of breast ultrasound images', Data in Brief 28 (2020)."
        ),
    }
}


@dataclass
class Split:
    """One split: images (uint8, each HxW or HxWxC, possibly of different sizes) and integer labels.

    ``names`` says where each image came from (a folder's file paths, relative to the dataset's root), for
    messages; ``None`` where images have no names (a ``.npz``: they are called ``split[index]``).
    """

    images: list[np.ndarray]
    labels: np.ndarray
    names: list[str] | None = None

    def name(self, index: int, split: str) -> str:
        """What to call image ``index`` of this split (named ``split``) in a message."""
        return self.names[index] if self.names is not None else f"{split}[{index}]"

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """A labelled image dataset with named splits (``train`` always; ``val`` and ``test`` optional)."""

    name: str
    labels: tuple[str, ...]
    splits: dict[str, Split]
    source: str
    warnings: list[str] = field(default_factory=list)
    attribution: str = ""
    #: A digest of the files the images were read from (folders), which :meth:`fingerprint` uses instead
    #: of the pixels: the pixels kept depend on the reduction asked for, the files do not.
    files_digest: str | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.labels)

    @property
    def native_color_mode(self) -> str:
        """``"grayscale"`` when every image has one channel, else ``"rgb"``."""
        for split in self.splits.values():
            for img in split.images:
                if img.ndim == 3 and img.shape[-1] != 1:
                    return "rgb"
        return "grayscale"

    @property
    def native_size(self) -> tuple[int, int]:
        """Median (height, width) of the training images."""
        shapes = np.array([img.shape[:2] for img in self.splits["train"].images])
        return int(np.median(shapes[:, 0])), int(np.median(shapes[:, 1]))

    def class_counts(self, split: str = "train") -> dict[str, int]:
        """Images per class label in ``split``."""
        counts = Counter(self.splits[split].labels.tolist())
        return {label: int(counts.get(i, 0)) for i, label in enumerate(self.labels)}

    def fingerprint(self) -> str:
        """A SHA-256 prefix over every split's labels and pixels, or over a folder's class names, file
        names and file contents (identifies the training data)."""
        if self.files_digest is not None:
            return self.files_digest[:16]
        digest = hashlib.sha256()
        digest.update("\n".join(self.labels).encode())
        for name in SPLIT_NAMES:
            if name not in self.splits:
                continue
            split = self.splits[name]
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(split.labels, dtype=np.int64).tobytes())
            for img in split.images:
                digest.update(str(img.shape).encode())
                digest.update(np.ascontiguousarray(img).tobytes())
        return digest.hexdigest()[:16]

    def arrays(self, split: str, size: tuple[int, int], color_mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, y)``: uint8 ``(N, H, W, C)`` images prepared with :func:`prepare_image`, int labels."""
        if split not in self.splits:
            raise DataError(f"dataset {self.name!r} has no {split!r} split; it has {sorted(self.splits)}")
        data = self.splits[split]
        channels = 1 if color_mode == "grayscale" else 3
        out = np.empty((len(data), size[0], size[1], channels), dtype=np.uint8)
        for i, img in enumerate(data.images):
            out[i] = prepare_image(img, size, color_mode)
        return out, data.labels.astype(np.int64)


def data_reference(source: str | Path, run_dir: Path) -> tuple[str, str | None]:
    """How a run records its data: ``(reference, beside_run)``.

    ``reference`` is a bundled sample's name as is, or the path made absolute; ``beside_run`` is that path
    relative to ``run_dir`` (``None`` for a bundled sample), for :func:`locate_run_data` to fall back on
    when data and run moved together (a project folder renamed, a run built in a temporary folder and
    then moved into place, as the demo's are).
    """
    text = str(source)
    if text in BUNDLED:
        return text, None
    reference = str(Path(text).expanduser().resolve())
    try:
        return reference, os.path.relpath(reference, Path(run_dir).expanduser().resolve())
    except ValueError:  # on Windows, data and run on different drives: no relative path
        return reference, None


def locate_run_data(reference: str, run_dir: Path, beside_run: str | None = None) -> tuple[str, list[str]]:
    """Where a run's data is now (see :func:`data_reference`), and a note when it was found moved.

    Raises :class:`DataError` naming both places when the data is at neither.
    """
    if reference in BUNDLED or Path(reference).exists():
        return reference, []
    if beside_run is not None and (Path(run_dir) / beside_run).exists():
        moved = str((Path(run_dir) / beside_run).resolve())
        return moved, [f"the data is no longer at {reference}; found it beside the run at {moved}"]
    elsewhere = f" (nor at {Path(run_dir) / beside_run})" if beside_run is not None else ""
    raise DataError(
        f"run {run_dir} was trained on data at {reference}, which is no longer there{elsewhere}; "
        "pass --data with where that data is now"
    )


def load_cap(image_size: int | Sequence[int | None] | None) -> int:
    """The ``max_short_side`` to load a folder with for models of ``image_size`` px (one size, or several:
    an (H, W) pair, or the arms of a comparison; ``None`` for an architecture's default size, all of which
    are under a quarter of :data:`MAX_SHORT_SIDE`): that limit, or four times the largest size where that
    is more."""
    sizes = [image_size] if image_size is None or isinstance(image_size, int) else list(image_size)
    return max([MAX_SHORT_SIDE] + [4 * int(v) for v in sizes if v is not None])


def load_dataset(
    source: str | Path,
    *,
    max_bad_fraction: float = 0.05,
    max_short_side: int | None = MAX_SHORT_SIDE,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Load ``source``: a bundled sample name, a class-folder tree or a MedMNIST-style ``.npz``.

    Args:
        source: ``"breastmnist"``; a folder ``DATA/<class>/<image>`` (or ``DATA/{train,val,test}/<class>/...``);
            or a ``.npz`` with ``train_images``/``train_labels`` and optional ``val_*``/``test_*`` keys (and an
            optional ``label_names`` array).
        max_bad_fraction: Unreadable images are skipped with a warning; more than this fraction fails.
        max_short_side: A folder's images whose shorter side is longer are reduced to it on load (see
            :func:`~visioncascade.data.images.reduce_image`; :func:`load_cap` gives the value for a model
            input size); ``None`` keeps them at full size. A ``.npz`` is kept as it is.
        progress: Called with (files read, image files in all) as a folder is read, for a progress bar.
    """
    text = str(source)
    path = check_source(source)
    if path is None:
        meta = BUNDLED[text]
        ref = resources.files("visioncascade.data") / "samples" / meta["file"]
        with resources.as_file(ref) as bundled:
            dataset = _load_npz(Path(bundled), name=text, label_names=meta["labels"])
        dataset.source = text
        dataset.attribution = meta["attribution"]
        return dataset
    if path.is_dir():
        return _load_folder(path, max_bad_fraction, max_short_side, progress)
    return _load_npz(path, name=path.stem)


def check_source(source: str | Path) -> Path | None:
    """What :func:`load_dataset` checks before reading anything: ``source`` names a bundled sample (→
    ``None``), an existing folder or a ``.npz`` file (→ its path). Raises :class:`DataError` otherwise.

    Cheap (no file is read), so a command can fail on a mistyped ``DATA`` before its slow imports.
    """
    text = str(source)
    if text in BUNDLED:
        return None
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"no dataset at {text!r}: expected a folder of class sub-folders, a .npz file, "
            f"or a bundled sample name ({', '.join(sorted(BUNDLED))})"
        )
    if not path.is_dir() and path.suffix.lower() != ".npz":
        raise DataError(f"{path} is a file but not a .npz; pass a folder of class sub-folders or a .npz file")
    return path


def _load_npz(path: Path, name: str, label_names: tuple[str, ...] | None = None) -> Dataset:
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for corrupt archives
        raise DataError(f"cannot read {path} as a .npz archive: {exc}") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a plain .npy saved under a .npz name
        raise DataError(f"{path} holds one array, not a .npz archive of train_images, train_labels, ...")
    with npz:
        return _read_npz(npz, path, name, label_names)


def _read_npz(
    npz: np.lib.npyio.NpzFile, path: Path, name: str, label_names: tuple[str, ...] | None
) -> Dataset:
    keys = set(npz.files)
    if "train_images" not in keys or "train_labels" not in keys:
        raise DataError(
            f"{path} lacks {sorted({'train_images', 'train_labels'} - keys)}; a MedMNIST-style .npz needs "
            f"train_images and train_labels (and optionally val_*/test_*); it has {sorted(keys)}"
        )
    splits: dict[str, Split] = {}
    for split in SPLIT_NAMES:
        img_key, lab_key = f"{split}_images", f"{split}_labels"
        if img_key not in keys and lab_key not in keys:
            continue
        if img_key not in keys or lab_key not in keys:
            missing = img_key if img_key not in keys else lab_key
            raise DataError(f"{path} has {lab_key if missing == img_key else img_key} but not {missing}")
        images, labels = npz[img_key], npz[lab_key]
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
            raise DataError(
                f"{path}: {img_key} must be (N, H, W) or (N, H, W, 1|3), got shape {images.shape}"
            )
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise DataError(
                f"{path}: {lab_key} must hold one integer class per image, shape (N,) or (N, 1); "
                f"got shape {labels.shape} (multi-label data is not supported)"
            )
        if len(labels) != len(images):
            raise DataError(
                f"{path}: {img_key} has {len(images)} images but {lab_key} has {len(labels)} labels"
            )
        if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and labels.min() < 0):
            raise DataError(f"{path}: {lab_key} must be non-negative integers, got dtype {labels.dtype}")
        images = _to_uint8(images, f"{path}:{img_key}")
        splits[split] = Split(images=list(images), labels=labels.astype(np.int64))
    if not len(splits["train"]):
        raise DataError(f"{path}: train_images holds no images; a dataset needs training images")
    num_classes = int(max(s.labels.max() for s in splits.values() if len(s)) + 1)
    if label_names is None and "label_names" in keys:
        label_names = tuple(str(v) for v in npz["label_names"])
    if label_names is None:
        label_names = tuple(str(i) for i in range(num_classes))
    if len(label_names) < num_classes:
        raise DataError(f"{path}: labels go up to {num_classes - 1} but only {len(label_names)} label_names")
    dataset = Dataset(name=name, labels=tuple(label_names), splits=splits, source=str(path))
    _check_classes(dataset)
    return dataset


def _to_uint8(images: np.ndarray, where: str) -> np.ndarray:
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise DataError(f"{where} holds NaN or infinite pixel values")
        top = 1.0 if images.max() <= 1.0 else 255.0
        return np.clip(np.rint(images / top * 255.0), 0, 255).astype(np.uint8)
    if np.issubdtype(images.dtype, np.integer):
        if images.min() < 0 or images.max() > 255:
            raise DataError(f"{where}: integer pixels must lie in 0..255, got {images.min()}..{images.max()}")
        return images.astype(np.uint8)
    raise DataError(f"{where}: unsupported pixel dtype {images.dtype}")


def _hidden(name: str) -> bool:
    """Hidden files and folders, and ``__MACOSX`` (the metadata folder of an archive made on a Mac, whose
    ``._name.jpg`` files are not images)."""
    return name.startswith(".") or name == "__MACOSX"


def _class_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not _hidden(p.name))


def _load_folder(
    path: Path,
    max_bad_fraction: float,
    max_short_side: int | None,
    progress: Callable[[int, int], None] | None,
) -> Dataset:
    subdirs = _class_dirs(path)
    if not subdirs:
        raise DataError(
            f"{path} has no class sub-folders; expected {path}/<class name>/<image>.png (one folder per class)"
        )
    names = {d.name for d in subdirs}
    if "train" in names and names <= set(SPLIT_NAMES):
        split_roots = {d.name: d for d in subdirs}
        labels = tuple(d.name for d in _class_dirs(split_roots["train"]))
        for root in split_roots.values():
            extra = {d.name for d in _class_dirs(root)} - set(labels)
            if extra:
                raise DataError(f"{root} has classes {sorted(extra)} that {split_roots['train']} lacks")
    else:
        split_roots = {"train": path}
        labels = tuple(d.name for d in subdirs)
    warnings: list[str] = []
    bad: list[tuple[Path, str]] = []  # (file, why)
    digest = hashlib.sha256("\n".join(labels).encode())
    jobs: list[tuple[str, int, Path]] = []  # (split, class index, file), in a fixed order
    for split, root in split_roots.items():
        for index, label in enumerate(labels):
            class_dir = root / label
            if not class_dir.is_dir():
                continue
            files = sorted(
                p
                for p in class_dir.rglob("*")
                if p.is_file() and not any(_hidden(part) for part in p.relative_to(class_dir).parts)
            )
            others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
            if others:
                warnings.append(
                    f"ignored {len(others)} non-image file(s) in {class_dir}, e.g. {others[0].name}"
                )
            jobs += [(split, index, p) for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    total = len(jobs)
    images: dict[str, list[np.ndarray]] = {split: [] for split in split_roots}
    names: dict[str, list[str]] = {split: [] for split in split_roots}
    targets: dict[str, list[int]] = {split: [] for split in split_roots}
    # Decoding releases the GIL (Pillow's decoders, OpenCV's resize): threads use every core. Ctrl-C (or
    # any error) cancels the files not started yet, rather than waiting for the whole folder.
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="decode")
    try:
        decoded = pool.map(lambda job: _decode_file(job[2], max_short_side), jobs)
        for done, ((split, index, file), (image, file_digest, size, error)) in enumerate(
            zip(jobs, decoded, strict=True), start=1
        ):
            if progress is not None:
                progress(done, total)
            if image is None:
                bad.append((file, error))
                continue
            name = file.relative_to(path).as_posix()
            images[split].append(image)
            names[split].append(name)
            targets[split].append(index)
            digest.update(b"%d %d %s " % (index, size, name.encode()))
            digest.update(file_digest)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    splits = {
        split: Split(images=images[split], labels=np.asarray(targets[split], np.int64), names=names[split])
        for split in split_roots
    }
    if bad:
        warnings.append(f"skipped {len(bad)} unreadable image(s): " + _unreadable(bad))
        if total and len(bad) / total > max_bad_fraction:
            raise DataError(
                f"{len(bad)} of {total} images in {path} are unreadable (more than "
                f"{max_bad_fraction:.0%}); fix or remove them. " + _unreadable(bad)
            )
    dataset = Dataset(
        name=path.name,
        labels=labels,
        splits=splits,
        source=str(path),
        warnings=warnings,
        files_digest=digest.hexdigest(),
    )
    _check_classes(dataset)
    return dataset


def _decode_file(file: Path, max_short_side: int | None) -> tuple[np.ndarray | None, bytes, int, str]:
    """``(image, SHA-256 of the file, its size, "")``, or ``(None, b"", 0, why)`` for an unreadable file."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        return None, b"", 0, f"cannot read image {file}: {exc.strerror or exc}"
    try:
        image = _read(file, data, max_short_side)
    except DataError as exc:
        return None, b"", 0, str(exc)
    return image, hashlib.sha256(data).digest(), len(data), ""


def _check_classes(dataset: Dataset) -> None:
    if dataset.num_classes < 2:
        raise DataError(
            f"dataset {dataset.source} has {dataset.num_classes} class ({list(dataset.labels)}); "
            "a classifier needs at least 2 classes"
        )
    counts = dataset.class_counts("train")
    empty = [label for label, n in counts.items() if n == 0]
    if empty:
        raise DataError(
            f"class(es) {empty} of {dataset.source} have no readable training images; "
            "add images or remove the folder"
        )
