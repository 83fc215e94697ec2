"""A small CNN classifier per dataset: its accuracy judges conditioning, its penultimate layer is the FD feature
space."""

import hashlib
import json

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..data import DATASETS, ImageDataset, load_dataset
from ..io import atomic, cache_dir, write_text

VERSION = 1  # bump when the architecture or training recipe changes, so stale caches are retrained


class FeatureClassifier(nn.Module):
    """Conv–Conv–Pool–Conv, then a `num_features`-wide penultimate layer and a linear head.

    Images of 16 pixels or more are pooled after the first conv and max-pooled to 4×4 at the end:
    4× cheaper at 28×28, and 88.5% rather than 84% held-out accuracy on Fashion-MNIST at equal time.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, num_features: int = 128, image_size: int = 8):
        super().__init__()
        self.num_features = num_features
        large = image_size >= 16
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            *([nn.MaxPool2d(2)] if large else []),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(4) if large else nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(128 * (16 if large else 4), num_features),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(num_features, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Features(nn.Module):
    """The classifier's penultimate layer as a torchmetrics feature extractor (it reads `num_features`)."""

    def __init__(self, classifier: FeatureClassifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x)


def shift(x: torch.Tensor, generator: torch.Generator, pixels: int = 1) -> torch.Tensor:
    """Random translation by up to `pixels`, padding with the background value -1."""
    padded = F.pad(x, (pixels,) * 4, value=-1.0)
    size = x.shape[-1]
    dx, dy = torch.randint(0, 2 * pixels + 1, (2,), generator=generator).tolist()
    return padded[..., dy : dy + size, dx : dx + size]


@torch.no_grad()
def predict(classifier: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    classifier.eval()
    return torch.cat([classifier(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def train_classifier(train: ImageDataset, test: ImageDataset, steps: int = 600, seed: int = 0, progress: bool = True):
    """Train on the real training split; returns (classifier, held-out accuracy)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = FeatureClassifier(train.image_shape[0], train.num_classes, image_size=train.image_shape[-1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    model.train()
    for _ in tqdm(range(steps), desc="train classifier", disable=not progress, leave=False):
        index = torch.randint(0, len(train), (128,), generator=generator)
        loss = F.cross_entropy(model(shift(train.images[index], generator)), train.labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    accuracy = (predict(model, test.images) == test.labels).float().mean().item()
    return model, accuracy


def cache_name(dataset_name: str, *splits) -> str:
    """A file name for the dataset's classifier. A folder is named by a hash of what was loaded from it
    (images at the model's size, labels, class names), so that a folder whose files change gets a new one."""
    if dataset_name in DATASETS:
        return dataset_name
    digest = hashlib.sha256()
    for data in splits:
        digest.update("|".join(data.class_names).encode())
        for tensor in (data.images, data.labels):
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.contiguous().numpy())  # hashed in place, no copy of a large folder
    return "folder-" + digest.hexdigest()[:12]


def load_classifier(dataset_name: str, progress: bool = True, image_shape: tuple | None = None):
    """The dataset's classifier from the cache, trained (and cached) only when missing; returns (classifier,
    accuracy)."""
    train, test = load_dataset(dataset_name, "train", image_shape), load_dataset(dataset_name, "test", image_shape)
    stem = cache_dir() / f"classifier-{cache_name(dataset_name, train, test)}-v{VERSION}"
    weights, info = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    classifier = FeatureClassifier(train.image_shape[0], train.num_classes, image_size=train.image_shape[-1])
    if weights.is_file() and info.is_file():
        try:
            classifier.load_state_dict(load_file(weights))
            return classifier.eval(), json.loads(info.read_text())["held_out_accuracy"]
        except Exception:  # a damaged cache is retrained, never trusted
            pass
    steps = 600 if len(train) < 10_000 else 800  # about 2 epochs of Fashion-MNIST
    classifier, accuracy = train_classifier(train, test, steps=steps, progress=progress)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with atomic(weights) as tmp:
        save_file(classifier.state_dict(), tmp)
    write_text(
        info, json.dumps({"dataset": dataset_name, "held_out_accuracy": accuracy, "held_out_images": len(test)}) + "\n"
    )
    return classifier, accuracy
