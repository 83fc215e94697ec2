"""Data sources: the IDX reader, Fashion-MNIST (installed by `make data`), and user image folders."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from cfgdistill.data import FASHION_CLASSES, load_dataset, load_fashion_mnist, load_image_folder, read_idx
from cfgdistill.errors import UserError


def write_idx(path, array: np.ndarray, code: int = 0x08, gz: bool = True):
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_round_trips_a_tiny_file(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("x.gz" if gz else "x"), images, gz=gz)
    assert np.array_equal(read_idx(path), images)
    labels = np.array([7, 1], dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "y.gz", labels)), labels)
    wide = np.array([[1, -2], [300, 4]], dtype=">i4")
    assert np.array_equal(read_idx(write_idx(tmp_path / "z.gz", wide, code=0x0C)), wide)


def test_idx_reader_refuses_foreign_and_truncated_files(tmp_path):
    (tmp_path / "foreign").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(tmp_path / "foreign")
    raw = bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + bytes(4)
    (tmp_path / "short").write_bytes(raw)
    with pytest.raises(UserError, match="holds 4 bytes of data; its header promises 10"):
        read_idx(tmp_path / "short")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(UserError, match="cannot read"):
        read_idx(tmp_path / "bad.gz")


def test_fashion_mnist_loader_on_tiny_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    train, test, every = (load_fashion_mnist(part, root=tmp_path) for part in ("train", "test", "all"))
    assert train.images.shape == (6, 1, 28, 28) and len(test) == 4 and len(every) == 10
    assert -1 <= train.images.min() and train.images.max() <= 1
    assert train.class_names == FASHION_CLASSES


def test_missing_fashion_mnist_names_the_install_command(tmp_path):
    with pytest.raises(UserError, match=r"install it with: make data"):
        load_fashion_mnist("train", root=tmp_path / "absent")


def test_the_installed_fashion_mnist():
    """`make test` installs Debian's dataset-fashion-mnist first (`make data`)."""
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert train.images.min() == -1 and train.images.max() == 1


def make_folder(root, colours: dict, per_class: int = 5, size=(20, 12)):
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, colour if i % 2 else (40, 40, 40)).save(root / name / f"{i}.png")
    return root


def test_image_folder_classes_size_and_channels(tmp_path):
    grey = load_image_folder(make_folder(tmp_path / "grey", {"cat": (200, 200, 200), "dog": (90, 90, 90)}))
    assert grey.class_names == ["cat", "dog"] and grey.images.shape == (10, 1, 32, 32)
    assert grey.labels.tolist() == [0] * 5 + [1] * 5
    colour = load_image_folder(make_folder(tmp_path / "colour", {"red": (255, 0, 0), "blue": (0, 0, 255)}))
    assert colour.images.shape == (10, 3, 32, 32)
    red = colour.images[5 * colour.class_names.index("red") + 1]  # "1.png" of the red class is red
    assert red[0].mean() == 1 and red[1].mean() == -1 and red[2].mean() == -1
    model_shape = load_image_folder(tmp_path / "colour", image_shape=(1, 16, 16))
    assert model_shape.images.shape == (10, 1, 16, 16)
    assert load_dataset(str(tmp_path / "colour"), "all", image_size=24).images.shape == (10, 3, 24, 24)
    train, test = load_dataset(str(tmp_path / "grey"), "train"), load_dataset(str(tmp_path / "grey"), "test")
    assert len(train) + len(test) == 10 and set(test.labels.tolist()) == {0, 1}


def test_image_folder_bad_files_are_named(tmp_path):
    root = make_folder(tmp_path / "data", {"a": (1, 1, 1), "b": (9, 9, 9)})
    (root / "a" / "9.png").write_bytes(b"")
    with pytest.raises(UserError, match=f"image file {root / 'a' / '9.png'} is empty"):
        load_image_folder(root)
    (root / "a" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(UserError, match=f"cannot read image {root / 'a' / '9.png'}"):
        load_image_folder(root)
    (root / "a" / "9.png").unlink()
    (root / "c").mkdir()
    with pytest.raises(UserError, match=f"class folder {root / 'c'} needs at least 5 images"):
        load_image_folder(root)
    with pytest.raises(UserError, match="has no class sub-folders"):
        load_image_folder(root / "c")


def test_a_folder_trains_and_samples_at_the_size_asked(tmp_path):
    """--image-size sets a folder model's side; the checkpoint keeps it, so sampling needs no flag."""
    from cfgdistill.cli import main

    root = make_folder(tmp_path / "shapes", {"red": (255, 0, 0), "blue": (0, 0, 255)}, per_class=8, size=(40, 30))
    out = tmp_path / "run"
    train = "train --image-size 16 --block-out-channels 8,16 --steps 2 --batch-size 4 --validate-every 0 --quiet"
    assert main([*train.split(), "--data", str(root), "--out", str(out)]) == 0
    sample = ["sample", "--model", str(out), "--prompt", "a photo of red", *"--n 2 --steps 2 --quiet".split()]
    assert main([*sample, "--out", str(tmp_path / "grid.png"), "--out-array", str(tmp_path / "x.npy")]) == 0
    assert np.load(tmp_path / "x.npy").shape == (2, 3, 16, 16)
