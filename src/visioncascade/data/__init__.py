"""Datasets, splits and input pipelines (the lowest stage: imports nothing above it).

``visioncascade.data.pipeline`` needs TensorFlow and is imported on its own.
"""

from visioncascade.data.datasets import (
    BUNDLED,
    MAX_SHORT_SIDE,
    Dataset,
    Split,
    check_source,
    data_reference,
    load_cap,
    load_dataset,
    locate_run_data,
)
from visioncascade.data.images import prepare_image, read_image, read_images, reduce_image, to_color_mode
from visioncascade.data.splits import (
    NEAR_COPY_RMS,
    NEAR_COPY_SIZE,
    check_copies,
    check_evaluated_copies,
    copies_of,
    duplicate_notes,
    evaluated_copy_notes,
    near_copies_of,
    resolve_splits,
    stratified_folds,
)

__all__ = [
    "BUNDLED",
    "MAX_SHORT_SIDE",
    "NEAR_COPY_RMS",
    "NEAR_COPY_SIZE",
    "Dataset",
    "Split",
    "check_copies",
    "check_evaluated_copies",
    "check_source",
    "copies_of",
    "data_reference",
    "duplicate_notes",
    "evaluated_copy_notes",
    "load_cap",
    "load_dataset",
    "locate_run_data",
    "near_copies_of",
    "prepare_image",
    "read_image",
    "read_images",
    "reduce_image",
    "resolve_splits",
    "stratified_folds",
    "to_color_mode",
]
