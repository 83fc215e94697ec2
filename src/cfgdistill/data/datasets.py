"""Datasets as in-memory tensors in [-1, 1]: images N×C×H×W, integer labels, class names.

Sources: scikit-learn's bundled digits, Fashion-MNIST from the Debian package `dataset-fashion-mnist`,
and a user's folder with one sub-folder of images per class. Nothing is downloaded.
"""

import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

DATASETS = ("digits", "fashion-mnist")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_INSTALL = "make data  (or: sudo apt-get install dataset-fashion-mnist)"
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
FOLDER_IMAGE_SIZE = 32
NATIVE_SIZE = {"digits": "8×8", "fashion-mnist": "28×28"}
MIN_PER_CLASS = 5  # so that the stratified 80/20 split holds every class on both sides


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


def read_idx(path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not: two zero bytes, a type code, the rank, big-endian sizes, data."""
    path = Path(path)
    try:
        raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    except (OSError, EOFError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_TYPES:
        raise UserError(f"{path} is not an IDX file")
    rank = raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise UserError(f"{path} is truncated in its header")
    dims = struct.unpack(f">{rank}I", raw[4:header])
    dtype = np.dtype(IDX_TYPES[raw[2]])
    if len(raw) - header != math.prod(dims) * dtype.itemsize:
        raise UserError(
            f"{path} holds {len(raw) - header} bytes of data; its header promises {math.prod(dims) * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def load_fashion_mnist(part: str, root: Path = FASHION_DIR) -> ImageDataset:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test images, 28×28, 10 classes."""
    if not root.is_dir():
        raise UserError(f"Fashion-MNIST is not installed ({root} is missing); install it with: {FASHION_INSTALL}")
    parts = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}[part]
    images = np.concatenate([read_idx(root / f"{p}-images-idx3-ubyte.gz") for p in parts])
    labels = np.concatenate([read_idx(root / f"{p}-labels-idx1-ubyte.gz") for p in parts])
    if images.ndim != 3 or len(images) != len(labels):
        raise UserError(f"{root} does not hold Fashion-MNIST: images {images.shape}, labels {labels.shape}")
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1) / 127.5 - 1.0
    return ImageDataset("fashion-mnist", x, torch.from_numpy(labels.astype(np.int64)), list(FASHION_CLASSES))


def open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size == 0:
        raise UserError(f"image file {path} is empty")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UserError(
            f"cannot read image {path}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from None


def has_colour(image) -> bool:
    rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


def load_image_folder(root, image_shape: tuple | None = None, image_size: int = FOLDER_IMAGE_SIZE) -> ImageDataset:
    """`root/<class name>/<image>`: each sub-folder is a class. Images are centre-cropped and resized to the
    model's size, and converted to its channels: `image_shape` when a model exists, else `image_size`
    square, grey unless any image has colour."""
    from PIL import ImageOps

    root = Path(root)
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise UserError(f"{root} has no class sub-folders; expected {root}/<class name>/<images>")
    images, labels = [], []
    for label, folder in enumerate(folders):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        if len(files) < MIN_PER_CLASS:
            raise UserError(
                f"class folder {folder} needs at least {MIN_PER_CLASS} images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}); it has {len(files)}"
            )
        images += [open_image(f) for f in files]
        labels += [label] * len(files)
    if image_shape is None:
        colour = any(has_colour(im) for im in images)
        image_shape = (3 if colour else 1, image_size, image_size)
    channels, size = image_shape[0], image_shape[1]
    mode = "RGB" if channels == 3 else "L"
    pixels = np.stack([np.asarray(ImageOps.fit(im.convert(mode), (size, size)), dtype=np.float32) for im in images])
    x = torch.from_numpy(pixels.reshape(len(images), size, size, -1)).permute(0, 3, 1, 2).contiguous() / 127.5 - 1.0
    return ImageDataset(str(root.resolve()), x, torch.tensor(labels), [f.name for f in folders])


def load_dataset(
    name: str, part: str = "train", image_shape: tuple | None = None, image_size: int | None = None
) -> ImageDataset:
    """A dataset's `train` or `test` (held-out) part, or `all` of it: digits, fashion-mnist, or a folder path.
    `image_size` sets a new folder model's side (default 32); the built-in datasets keep their own."""
    if image_size is not None and name in DATASETS:
        raise UserError(
            f"--image-size applies to image folders; {name} images keep their own size, {NATIVE_SIZE[name]}"
        )
    if name == "fashion-mnist":
        return load_fashion_mnist(part)
    if name == "digits":
        dataset = load_digits()
    elif Path(name).is_dir():
        dataset = load_image_folder(name, image_shape, image_size or FOLDER_IMAGE_SIZE)
    else:
        raise UserError(f"unknown dataset {name!r}; choose {', '.join(DATASETS)} or a folder of class sub-folders")
    if part == "all":
        return dataset
    train, test = split(dataset)
    return {"train": train, "test": test}[part]
