"""Teacher training with condition dropout (Ho & Salimans 2022)."""

from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F

from .checkpoint import Checkpoint
from .conditioning import TEXT_DIM, default_kind, make_conditioning
from .data import ImageDataset, load_dataset
from .errors import UserError
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
    scale_shift: bool = False  # the embedding scales and shifts each ResNet block's features (ADM), not only shifts
    conditioning: str | None = None  # "class" or "text"; None: text, except for digits
    image_size: int | None = None  # an image folder's side in pixels (None: 32); built-in datasets keep theirs

    def validate(self):
        super().validate()
        if self.image_size is not None and self.image_size < 8:
            raise UserError(f"image size must be at least 8 pixels, got {self.image_size}")


def check_unet_levels(size: int, levels: int):
    """Each UNet level but the last halves the image and the way up doubles it, so the halvings must be exact."""
    factor = 2 ** (levels - 1)
    if size % factor:
        raise UserError(f"{size}×{size} images cannot pass {levels} UNet levels (--block-out-channels): "
                        f"each level but the last halves the image, so its side must be a multiple of {factor}")


class TeacherObjective(Objective):
    """The diffusion loss on (x_t, t, c), with c dropped to the null condition with probability p_uncond."""

    name = "teacher"

    def draw(self, x_0, labels, generator) -> dict:
        x_t, t, eps = noisy_batch(self.noise_schedule, x_0, generator)
        cond = self.conditioning.draw(labels, generator)
        return {"x_t": x_t, "t": t, "cond": cond, "target": target(self.noise_schedule, x_0, eps, t)}

    def loss(self, model, rows: dict) -> torch.Tensor:
        return F.mse_loss(model(rows["x_t"], rows["t"], rows["cond"]).float(), rows["target"])


def train_teacher(config: TrainConfig, dataset: ImageDataset | None = None, run: RunOptions | None = None) -> Checkpoint:
    """Train a class- or text-conditional teacher; `run` says where checkpoints and logs go (default: nowhere)."""
    config = replace(config, conditioning=config.conditioning or default_kind(config.data))
    config.validate()
    dataset = dataset or load_dataset(config.data, "train", image_size=config.image_size)
    conditioning = make_conditioning(config.conditioning, dataset.name, dataset.class_names, config.p_uncond)
    schedule = make_noise_schedule(config.prediction)
    torch.manual_seed(config.seed)
    channels, size, _ = dataset.image_shape
    check_unet_levels(size, len(config.block_out_channels))
    model = Denoiser(
        sample_size=size,
        in_channels=channels,
        num_classes=dataset.num_classes,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        attention=config.attention,
        scale_shift=config.scale_shift,
        text_dim=TEXT_DIM if conditioning.kind == "text" else None,
    )
    if conditioning.kind == "text":
        model.null_text.copy_(conditioning.null)
    objective = TeacherObjective(schedule, conditioning, dataset.num_classes)
    fit(model, objective, dataset, config, run, identity={"data_images": len(dataset)})
    return Checkpoint.create(model.cpu(), schedule, kind="teacher", dataset=dataset, training=asdict(config), conditioning=conditioning)
