"""Teacher training with condition dropout (Ho & Salimans 2022)."""

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .checkpoint import Checkpoint
from .data import ImageDataset, load_dataset
from .diffusion import make_noise_schedule, noisy_batch, target
from .loop import LoopConfig, Objective, RunOptions, fit
from .models import Denoiser


@dataclass
class TrainConfig(LoopConfig):
    data: str = "digits"
    prediction: str = "v_prediction"
    block_out_channels: list = field(default_factory=lambda: [32, 64])
    layers_per_block: int = 1
    attention: bool = False


def drop_labels(labels: torch.Tensor, null: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """Condition dropout: each label becomes the null class with probability p."""
    drop = torch.rand(labels.shape, generator=generator) < p
    return torch.where(drop, torch.full_like(labels, null), labels)


class TeacherObjective(Objective):
    """The diffusion loss on (x_t, t, label), with labels dropped to the null class with probability p_uncond."""

    name = "teacher"

    def __init__(self, noise_schedule, num_classes: int, p_uncond: float):
        super().__init__(noise_schedule, num_classes)
        self.p_uncond = p_uncond

    def draw(self, x_0, labels, generator) -> dict:
        x_t, t, eps = noisy_batch(self.noise_schedule, x_0, generator)
        labels = drop_labels(labels, self.num_classes, self.p_uncond, generator)
        return {"x_t": x_t, "t": t, "labels": labels, "target": target(self.noise_schedule, x_0, eps, t)}

    def loss(self, model, rows: dict) -> torch.Tensor:
        return F.mse_loss(model(rows["x_t"], rows["t"], rows["labels"]).float(), rows["target"])


def train_teacher(config: TrainConfig, dataset: ImageDataset | None = None, run: RunOptions | None = None) -> Checkpoint:
    """Train a class-conditional teacher; `run` says where checkpoints and logs go (default: nowhere)."""
    config.validate()
    dataset = dataset or load_dataset(config.data, "train")
    schedule = make_noise_schedule(config.prediction)
    torch.manual_seed(config.seed)
    channels, size, _ = dataset.image_shape
    model = Denoiser(
        sample_size=size,
        in_channels=channels,
        num_classes=dataset.num_classes,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        attention=config.attention,
    )
    objective = TeacherObjective(schedule, dataset.num_classes, config.p_uncond)
    fit(model, objective, dataset, config, run, identity={"data_images": len(dataset)})
    return Checkpoint.create(model.cpu(), schedule, kind="teacher", dataset=dataset, training=asdict(config))
