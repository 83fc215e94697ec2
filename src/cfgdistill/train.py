"""Teacher training with condition dropout (Ho & Salimans 2022), and the loop that distillation shares."""

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from .checkpoint import Checkpoint
from .data import Batches, ImageDataset, load_dataset
from .diffusion import make_noise_schedule, noisy_batch, target
from .errors import UserError
from .models import Denoiser


@dataclass
class TrainConfig:
    data: str = "digits"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    p_uncond: float = 0.1
    prediction: str = "v_prediction"
    ema_decay: float = 0.999
    seed: int = 0
    block_out_channels: list = field(default_factory=lambda: [32, 64])
    layers_per_block: int = 1
    attention: bool = False

    def validate(self):
        positive(steps=self.steps, batch_size=self.batch_size, lr=self.lr)
        if not 0 <= self.p_uncond < 1:
            raise UserError(f"p-uncond must be in [0, 1), got {self.p_uncond}")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"ema-decay must be in [0, 1), got {self.ema_decay}")


def positive(**values):
    """Refuse any value that is not a finite number above zero, naming the flag."""
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise UserError(f"{name.replace('_', '-')} must be > 0, got {value}")


def drop_labels(labels: torch.Tensor, null: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """Condition dropout: each label becomes the null class with probability p."""
    drop = torch.rand(labels.shape, generator=generator) < p
    return torch.where(drop, torch.full_like(labels, null), labels)


def fit(model, loss_fn, data: ImageDataset, config, desc: str, progress: bool = True):
    """AdamW with warm-up and cosine decay, gradient clipping and EMA; returns the model holding its EMA weights.

    `config` gives steps, batch_size, lr, warmup_steps and ema_decay; `loss_fn(model, x_0, labels)` the loss.
    """
    steps = config.steps
    model.train()
    batches = Batches(data, config.batch_size, torch.Generator().manual_seed(config.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    warmup = min(config.warmup_steps, steps // 10)
    lr_schedule = get_scheduler("cosine", optimizer, num_warmup_steps=warmup, num_training_steps=steps)
    ema = EMAModel(model.parameters(), decay=config.ema_decay, foreach=True)
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, dynamic_ncols=True)
    for step in bar:
        x_0, labels = next(batches)
        loss = loss_fn(model, x_0, labels)
        if not torch.isfinite(loss):
            raise UserError(f"{desc}: the loss became {loss.item()} at step {step}; try a lower --lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(model.parameters())
        if step % 10 == 0 or step == steps:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    ema.copy_to(model.parameters())
    return model.eval()


def train_teacher(config: TrainConfig, dataset: ImageDataset | None = None, progress: bool = True) -> Checkpoint:
    """Train a class-conditional teacher whose labels are dropped to the null class with probability p_uncond."""
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
    generator = torch.Generator().manual_seed(config.seed + 1)  # noise, t and dropout; batches have their own

    def loss_fn(model, x_0, labels):
        x_t, t, eps = noisy_batch(schedule, x_0, generator)
        labels = drop_labels(labels, dataset.num_classes, config.p_uncond, generator)
        return F.mse_loss(model(x_t, t, labels), target(schedule, x_0, eps, t))

    fit(model, loss_fn, dataset, config, "train teacher", progress)
    return Checkpoint.create(model, schedule, kind="teacher", dataset=dataset, training=asdict(config))
