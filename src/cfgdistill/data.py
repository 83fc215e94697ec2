"""Datasets as in-memory tensors in [-1, 1]: images N×C×H×W, integer labels, class names."""

from dataclasses import dataclass

import numpy as np
import torch

from .errors import UserError

DATASETS = ("digits",)


@dataclass
class ImageDataset:
    name: str
    images: torch.Tensor  # N×C×H×W float32 in [-1, 1]
    labels: torch.Tensor  # N, int64
    class_names: list

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.images.shape[1:])

    def subset(self, index) -> "ImageDataset":
        return ImageDataset(self.name, self.images[index], self.labels[index], self.class_names)


def split(dataset: ImageDataset, held_out: float = 0.2, seed: int = 0) -> tuple:
    """A fixed stratified train / held-out split, the same on every machine."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(dataset))
    train, test = train_test_split(index, test_size=held_out, random_state=seed, stratify=dataset.labels.numpy())
    return dataset.subset(torch.from_numpy(np.sort(train))), dataset.subset(torch.from_numpy(np.sort(test)))


def load_digits() -> ImageDataset:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, pixel values 0–16); nothing is downloaded."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32)).unsqueeze(1) / 8.0 - 1.0
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return ImageDataset("digits", images, labels, [str(d) for d in range(10)])


def load_dataset(name: str, part: str = "train") -> ImageDataset:
    """A named dataset's `train` or `test` (held-out) part, or `all` of it."""
    if name != "digits":
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    dataset = load_digits()
    if part == "all":
        return dataset
    train, test = split(dataset)
    return {"train": train, "test": test}[part]
