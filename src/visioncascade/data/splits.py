"""Stratified splits: hold-outs for datasets without val/test, and K folds for cross-validation."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from visioncascade.data.datasets import Dataset, Split
from visioncascade.errors import DataError

__all__ = [
    "NEAR_COPY_RMS",
    "NEAR_COPY_SIZE",
    "check_copies",
    "check_evaluated_copies",
    "copies_of",
    "duplicate_notes",
    "evaluated_copy_notes",
    "near_copies_of",
    "resolve_splits",
    "stratified_folds",
]

SPLIT_ORDER = ("train", "val", "test")

#: Near copies are images whose ``NEAR_COPY_SIZE`` px square thumbnails (area-averaged, colour kept) differ
#: by at most ``NEAR_COPY_RMS`` levels of 255, root mean square. A photo saved again (another JPEG quality,
#: resized, lightly retouched) stays far under it; distinct images sit far over it: the nearest two of the
#: test suite's 40-px synthetic shapes (on noise) are 16 apart. In BreastMNIST the distances of test images
#: to their nearest training or val image fall in two groups, 0-10 (the same scan twice) and over 16.
NEAR_COPY_SIZE = 32
NEAR_COPY_RMS = 8.0


def _take(split: Split, index: np.ndarray, origin: str) -> Split:
    """The images ``index`` of ``split``, still named as in the data (``origin`` is the split's name)."""
    names = [split.name(int(i), origin) for i in index]
    return Split(images=[split.images[i] for i in index], labels=split.labels[index], names=names)


def _holdout(dataset: Dataset, split: Split, fraction: float, seed: int, what: str) -> tuple[Split, Split]:
    counts = np.bincount(split.labels, minlength=dataset.num_classes)
    if counts.min() < 2:
        label = dataset.labels[int(counts.argmin())]
        raise DataError(
            f"class {label!r} has {counts.min()} training image(s); a stratified {what} split needs at least 2 "
            "per class — add images or provide the split yourself"
        )
    n_hold = max(round(fraction * len(split)), dataset.num_classes)
    keep, hold = train_test_split(
        np.arange(len(split)), test_size=n_hold, stratify=split.labels, random_state=seed
    )
    return _take(split, np.sort(keep), "train"), _take(split, np.sort(hold), "train")


def resolve_splits(
    dataset: Dataset, seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.1
) -> tuple[Dataset, list[str]]:
    """Return a dataset with ``train``, ``val`` and ``test`` splits, and notes on what was made up.

    Splits the dataset already has are kept untouched. A missing ``test`` split is a stratified
    ``test_fraction`` hold-out of ``train``; a missing ``val`` split a stratified ``val_fraction`` hold-out
    of what remains. The same seed always gives the same splits.
    """
    splits = dict(dataset.splits)
    notes: list[str] = []
    if "test" not in splits or len(splits["test"]) == 0:
        splits["train"], splits["test"] = _holdout(dataset, splits["train"], test_fraction, seed, "test")
        notes.append(
            f"no test split: held out a stratified {test_fraction:.0%} of train as test (seed {seed})"
        )
    if "val" not in splits or len(splits["val"]) == 0:
        splits["train"], splits["val"] = _holdout(dataset, splits["train"], val_fraction, seed + 1, "val")
        notes.append(
            f"no val split: held out a stratified {val_fraction:.0%} of train as val (seed {seed + 1})"
        )
    resolved = Dataset(
        name=dataset.name,
        labels=dataset.labels,
        splits=splits,
        source=dataset.source,
        warnings=list(dataset.warnings),
        attribution=dataset.attribution,
    )
    return resolved, notes


def duplicate_notes(splits: dict[str, Split], labels: tuple[str, ...], examples: int = 3) -> list[str]:
    """The notes of :func:`check_copies`."""
    return check_copies(splits, labels, examples)[0]


def check_copies(
    splits: dict[str, Split], labels: tuple[str, ...], examples: int = 3
) -> tuple[list[str], np.ndarray]:
    """Notes on exact copies (the same pixels) and near copies (see :data:`NEAR_COPY_RMS`) that sit in two
    splits or carry two labels.

    A val or test image that is a copy of a training image is not unseen: test metrics count it as if it
    were, and early stopping and calibration fit to it. A copy with another label is a labelling error, or
    classes that cannot be told apart. Both are common in collected data (the same photo saved twice,
    once per folder), and BreastMNIST's official splits hold both kinds.

    Returns the notes, and a mask over the test split: the images with an exact or near copy among the
    training and val images (those that figures on unseen images leave out). Each image is hashed and
    thumbnailed once.
    """
    keys = {name: [_pixels_key(image) for image in split.images] for name, split in splits.items()}
    channels = 3 if any(_is_colour(split) for split in splits.values()) else 1
    thumbs = {name: _thumbnails(split.images, channels) for name, split in splits.items()}
    first: dict[bytes, tuple[str, int]] = {}
    copies_in: dict[str, list[str]] = {name: [] for name in SPLIT_ORDER}
    conflicts: list[str] = []
    for name in SPLIT_ORDER:
        split = splits.get(name)
        if split is None:
            continue
        for i, key in enumerate(keys[name]):
            if key not in first:
                first[key] = (name, i)
                continue
            name0, i0 = first[key]
            this, that = split.name(i, name), splits[name0].name(i0, name0)
            label, label0 = labels[int(split.labels[i])], labels[int(splits[name0].labels[i0])]
            if label != label0:
                conflicts.append(f"{this} {label!r} = {that} {label0!r}")
            if name0 != name:
                copies_in[name].append(f"{this} = {that}")
    notes = []
    for name, earlier, what in (
        ("val", "training", "early stopping and calibration fit to {it}"),
        ("test", "training or val", "the test metrics count {it} as unseen"),
    ):
        copies = copies_in[name]
        if copies:
            one = len(copies) == 1
            notes.append(
                f"{len(copies)} {name} {'image is an exact copy of a' if one else 'images are exact copies of'} "
                f"{earlier} {'image' if one else 'images'} ({_some(copies, examples)}): "
                f"{what.format(it='it' if one else 'them')}; remove the copies to measure on unseen images"
            )
    if conflicts:
        one = len(conflicts) == 1
        notes.append(
            f"{len(conflicts)} exact {'copy carries' if one else 'copies carry'} another label than the image "
            f"copied ({_some(conflicts, examples)}): one of each pair is mislabelled, or the classes cannot "
            "be told apart"
        )
    test_look_alikes = np.zeros(len(splits["test"]) if "test" in splits else 0, dtype=bool)
    for name, earlier, whose, what in (
        ("val", ("train",), "training", "early stopping and calibration fit to {it}"),
        ("test", ("train", "val"), "training or val", "the test metrics count {it} as unseen"),
    ):
        if name not in splits:
            continue
        refs = [ref for ref in earlier if ref in splits]
        exact = {key for ref in refs for key in keys[ref]}
        reference = {ref: splits[ref] for ref in refs}
        known = (exact, _stacked([thumbs[ref] for ref in refs], thumbs[name]))
        near = _near_copies(splits[name], name, reference, labels, (keys[name], thumbs[name]), known)
        if name == "test":
            test_look_alikes = np.array([key in exact for key in keys["test"]], dtype=bool)
            test_look_alikes[[i for i, _, _ in near]] = True
        if near:
            who = f"{len(near)} {name} image" + ("" if len(near) == 1 else "s")
            notes.append(_near_note(near, who, f"{whose} images", what, examples))
    relabelled = _relabelled_near_copies(splits.get("train"), labels, keys.get("train"), thumbs.get("train"))
    if relabelled:
        one = len(relabelled) == 1
        notes.append(
            f"{'2 training images' if one else f'{len(relabelled)} pairs of training images'} look nearly the "
            f"same but carry different labels ({_some(relabelled, examples)}; {NEAR_COPY_SIZE}x{NEAR_COPY_SIZE} px "
            f"thumbnails within {NEAR_COPY_RMS:g} of 255, root mean square): one of each pair is mislabelled, or "
            "the classes cannot be told apart"
        )
    return notes, test_look_alikes


def _stacked(parts: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    return np.concatenate(parts) if parts else like[:0]


def _relabelled_near_copies(
    split: Split | None, labels: tuple[str, ...], keys: list[bytes] | None, thumbs: np.ndarray | None
) -> list[str]:
    """``"a 'label' ≈ b 'other label'"`` for each pair of training images that are near copies but not exact
    copies (those are noted as such) and carry different labels (``keys`` and ``thumbs``: the split's)."""
    if split is None or keys is None or thumbs is None or len(split) < 2:
        return []
    found = []
    for i, j in _pairs_within(thumbs, NEAR_COPY_RMS):
        if split.labels[i] != split.labels[j] and keys[i] != keys[j]:
            found.append(
                f"{split.name(i, 'train')} {labels[int(split.labels[i])]!r} ≈ "
                f"{split.name(j, 'train')} {labels[int(split.labels[j])]!r}"
            )
    return found


def _pairs_within(thumbs: np.ndarray, limit: float) -> list[tuple[int, int]]:
    """Every ``(i, j)``, ``i < j``, of ``thumbs`` whose RMS difference is at most ``limit`` (the coarse pass of
    :func:`_nearest_within` first)."""
    small = _coarse(thumbs)
    flat = thumbs.reshape(len(thumbs), -1)
    pairs = []
    for start in range(0, len(thumbs), 256):
        block = _rms(small[start : start + 256], small)
        for offset, row in enumerate(block):
            i = start + offset
            candidates = np.flatnonzero(row[i + 1 :] <= limit + 0.5) + i + 1
            if candidates.size:
                full = np.sqrt(np.square(flat[candidates] - flat[i].astype(np.float32)).mean(axis=1))
                pairs += [(i, int(j)) for j in candidates[full <= limit]]
    return pairs


def _near_note(near: list[tuple[int, str, bool]], who: str, whose: str, what: str, examples: int) -> str:
    """``who`` looks nearly the same as ``whose`` (examples; how near); ``what`` (``{it}``: it or them)."""
    one = len(near) == 1
    it = "it" if one else "them"
    relabelled = sum(other for _, _, other in near)
    return (
        f"{who} {'looks' if one else 'look'} nearly the same as {whose} "
        f"({_some([pair for _, pair, _ in near], examples)}; {NEAR_COPY_SIZE}x{NEAR_COPY_SIZE} px thumbnails "
        f"within {NEAR_COPY_RMS:g} of 255, root mean square): a copy saved again, resized or retouched, or the "
        f"same scene twice; {what.format(it=it)}"
        + (f"; {_carry(relabelled, one)} another label than the look-alike" if relabelled else "")
    )


def _carry(count: int, one: bool) -> str:
    return "it carries" if one else f"{count} of them {'carries' if count == 1 else 'carry'}"


def near_copies_of(
    split: Split, name: str, reference: dict[str, Split], labels: tuple[str, ...] | None = None
) -> list[tuple[int, str, bool]]:
    """``(index, "image ≈ reference image", other label)`` for each image of ``split`` (called ``name``)
    that is a near copy (see :data:`NEAR_COPY_RMS`), but not an exact copy, of an image of ``reference``'s
    splits: the nearest such image. ``other label`` says whether the two carry different labels (always
    ``False`` without ``labels``, as for data a run is evaluated on, whose labels may be named otherwise).
    """
    channels = 3 if any(_is_colour(s) for s in (split, *reference.values())) else 1
    images = [image for ref_split in reference.values() for image in ref_split.images]
    return _near_copies(
        split,
        name,
        reference,
        labels,
        ([_pixels_key(image) for image in split.images], _thumbnails(split.images, channels)),
        ({_pixels_key(image) for image in images}, _thumbnails(images, channels)),
    )


def _near_copies(
    split: Split,
    name: str,
    reference: dict[str, Split],
    labels: tuple[str, ...] | None,
    query: tuple[list[bytes], np.ndarray],
    known: tuple[set[bytes], np.ndarray],
) -> list[tuple[int, str, bool]]:
    """:func:`near_copies_of`, given the split's pixel keys and thumbnails (``query``) and the reference's
    keys and thumbnails, in ``reference``'s order (``known``)."""
    ref_names = [(ref_name, i) for ref_name, ref_split in reference.items() for i in range(len(ref_split))]
    if not len(split) or not ref_names:
        return []
    (keys, query_thumbs), (exact, ref_thumbs) = query, known
    found = []
    for i, j in _nearest_within(query_thumbs, ref_thumbs, NEAR_COPY_RMS):
        if keys[i] in exact:
            continue  # an exact copy: noted as such
        ref_name, ref_index = ref_names[j]
        ref_split = reference[ref_name]
        other = labels is not None and int(split.labels[i]) != int(ref_split.labels[ref_index])
        found.append((i, f"{split.name(i, name)} ≈ {ref_split.name(ref_index, ref_name)}", other))
    return found


def _is_colour(split: Split) -> bool:
    return any(image.ndim == 3 and image.shape[-1] in (3, 4) for image in split.images)


def _thumbnails(images: list[np.ndarray], channels: int) -> np.ndarray:
    """``(N, NEAR_COPY_SIZE, NEAR_COPY_SIZE, channels)`` uint8 thumbnails: area-averaged when shrinking."""
    size = NEAR_COPY_SIZE
    out = np.empty((len(images), size, size, channels), np.uint8)
    for k, image in enumerate(images):
        image = image if image.ndim == 3 else image[..., None]
        image = image[..., :3] if channels == 3 else image[..., :1]
        if image.shape[-1] != channels:
            image = np.repeat(image, channels, axis=-1)
        shrink = min(image.shape[:2]) >= size
        thumb = cv2.resize(
            np.ascontiguousarray(image),
            (size, size),
            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
        )
        out[k] = thumb.reshape(size, size, channels)
    return out


def _coarse(thumbs: np.ndarray) -> np.ndarray:
    """``(N, 256)``: each thumbnail's 16x16 grey average (2x2 blocks, then the channels)."""
    n, size, _, c = thumbs.shape
    out = np.empty((n, (size // 2) ** 2), np.float32)
    for start in range(0, n, 4096):  # in chunks: no float copy of every thumbnail at once
        blocks = thumbs[start : start + 4096].reshape(-1, size // 2, 2, size // 2, 2, c).astype(np.float32)
        out[start : start + 4096] = blocks.mean(axis=(2, 4)).mean(axis=-1).reshape(len(blocks), -1)
    return out


def _rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS differences of every row of ``a`` with every row of ``b`` (float32: good to ~0.01 here)."""
    squares = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squares, 0.0) / a.shape[1])


def _nearest_within(query: np.ndarray, reference: np.ndarray, limit: float) -> list[tuple[int, int]]:
    """``(i, j)``: each query thumbnail's nearest reference thumbnail, where their RMS difference <= ``limit``.

    A coarse pass first: the RMS difference of the 16x16 grey averages is never more than that of the full
    thumbnails (averaging never adds to a mean square), so pairs over ``limit`` there are dropped exactly,
    at a quarter of the work or less; survivors are measured in full.
    """

    small_q, small_r = _coarse(query), _coarse(reference)
    flat_q, flat_r = query.reshape(len(query), -1), reference.reshape(len(reference), -1)
    pairs = []
    for start in range(0, len(query), 256):
        block = _rms(small_q[start : start + 256], small_r)
        for offset, row in enumerate(block):
            candidates = np.flatnonzero(row <= limit + 0.5)  # + float32 round-off of the expanded square
            if candidates.size == 0:
                continue
            i = start + offset
            full = np.sqrt(np.square(flat_r[candidates] - flat_q[i].astype(np.float32)).mean(axis=1))
            best = int(np.argmin(full))
            if full[best] <= limit:
                pairs.append((i, int(candidates[best])))
    return pairs


def copies_of(split: Split, name: str, reference: dict[str, Split]) -> list[tuple[int, str]]:
    """``(index, "image = reference image")`` for each image of ``split`` (called ``name``) that has the very
    pixels of an image of ``reference``'s splits (a run's training data, for data it is evaluated on)."""
    return _exact_copies(split, name, [_pixels_key(image) for image in split.images], _named_keys(reference))


def _named_keys(reference: dict[str, Split]) -> dict[bytes, str]:
    """Each pixel key of ``reference``'s images, with the name of the first image that has it."""
    known: dict[bytes, str] = {}
    for ref_name, ref_split in reference.items():
        for i, image in enumerate(ref_split.images):
            known.setdefault(_pixels_key(image), ref_split.name(i, ref_name))
    return known


def _exact_copies(
    split: Split, name: str, keys: list[bytes], known: dict[bytes, str]
) -> list[tuple[int, str]]:
    """:func:`copies_of`, given the split's pixel keys and :func:`_named_keys` of the reference."""
    return [(i, f"{split.name(i, name)} = {known[key]}") for i, key in enumerate(keys) if key in known]


def evaluated_copy_notes(
    splits: dict[str, Split], names: list[str], reference: dict[str, Split]
) -> list[str]:
    """The notes of :func:`check_evaluated_copies`."""
    return check_evaluated_copies(splits, names, reference)[0]


def check_evaluated_copies(
    splits: dict[str, Split], names: list[str], reference: dict[str, Split]
) -> tuple[list[str], np.ndarray]:
    """The notes on evaluated images (``splits[name]`` for ``names``) that are exact or near copies of
    ``reference``'s (the images a run was trained or validated on), if any; and a mask over those images,
    in that order, of the copies. Each image is hashed and thumbnailed once."""
    channels = (
        3 if any(_is_colour(s) for s in (*(splits[name] for name in names), *reference.values())) else 1
    )
    named = _named_keys(reference)
    images = [image for ref_split in reference.values() for image in ref_split.images]
    known = (set(named), _thumbnails(images, channels))
    found = {}
    for name in names:
        split = splits[name]
        keys = [_pixels_key(image) for image in split.images]
        query = (keys, _thumbnails(split.images, channels))
        found[name] = (
            _exact_copies(split, name, keys, named),
            _near_copies(split, name, reference, None, query, known),
        )
    copies = [c for exact, _ in found.values() for _, c in exact]
    near = [c for _, close in found.values() for c in close]
    masks = []
    for name, (exact, close) in found.items():
        mask = np.zeros(len(splits[name]), dtype=bool)
        mask[[i for i, _ in exact] + [i for i, _, _ in close]] = True
        masks.append(mask)
    total = sum(len(splits[name]) for name in names)
    notes = []
    if copies:
        copy, it = (
            ("is an exact copy of an image", "it")
            if len(copies) == 1
            else ("are exact copies of images", "them")
        )
        notes.append(
            f"{len(copies)} of the {total} images evaluated {copy} the run was trained or validated on "
            f"({_some(copies, 3)}): these figures count {it} as unseen"
        )
    if near:
        notes.append(
            _near_note(
                near,
                f"{len(near)} of the {total} images evaluated",
                "images the run was trained or validated on",
                "these figures count {it} as unseen",
                3,
            )
        )
    return notes, np.concatenate(masks) if masks else np.zeros(0, dtype=bool)


def _pixels_key(image: np.ndarray) -> bytes:
    digest = hashlib.blake2b(str(image.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.digest()


def _some(items: list[str], limit: int) -> str:
    shown = "; ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}; and {len(items) - limit} more"


def stratified_folds(
    labels: np.ndarray, folds: int, seed: int, label_names: tuple[str, ...] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return ``folds`` stratified ``(train_index, val_index)`` pairs over ``labels``.

    Raises :class:`DataError` when a class has fewer images than folds.
    """
    if folds < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {folds} (use 0 to skip it)")
    counts = np.bincount(labels)
    present = counts[counts > 0]
    if present.min() < folds:
        index = int(np.where(counts == present.min())[0][0])
        name = label_names[index] if label_names else str(index)
        fewest = int(present.min())
        fix = (
            f"use --folds {fewest} or fewer (or 0 to skip cross-validation), or add images"
            if fewest >= 2
            else "use --folds 0 to skip cross-validation, or add images (2-fold cross-validation needs 2 per class)"
        )
        raise DataError(
            f"class {name!r} has only {fewest} image(s) in the training split, fewer than --folds {folds}; {fix}"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))
