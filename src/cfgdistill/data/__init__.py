"""Training data: image datasets (datasets.py) and the captions text models learn from (captions.py)."""

from .datasets import (
    DATASETS,
    FASHION_CLASSES,
    ImageDataset,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
    split,
)

__all__ = [
    "DATASETS",
    "FASHION_CLASSES",
    "ImageDataset",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "read_idx",
    "split",
]
