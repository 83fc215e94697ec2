"""`train`: a class- or text-conditional teacher with condition dropout (Ho & Salimans 2022)."""

from dataclasses import asdict, replace

import torch

from ..checkpoint import Checkpoint
from ..conditioning import new_conditioning
from ..config import RunOptions, TrainConfig
from ..data import ImageDataset, load_dataset
from ..errors import UserError
from ..networks import Denoiser, FluxDenoiser
from ..objectives import Denoising
from ..processes import VP, RectifiedFlow
from ..training.loop import fit
from ..training.run_folder import RunFolder
from .inputs import guarded
from .preview import class_preview


def check_unet_levels(size: int, levels: int):
    """Each UNet level but the last halves the image and the way up doubles it, so the halvings must be exact."""
    factor = 2 ** (levels - 1)
    if size % factor:
        raise UserError(
            f"{size}×{size} images cannot pass {levels} UNet levels (--block-out-channels): "
            f"each level but the last halves the image, so its side must be a multiple of {factor}"
        )


def make_teacher_network(config: TrainConfig, dataset: ImageDataset, conditioning):
    """Our UNet or diffusers' Flux transformer, sized by a resolved config, for the dataset's images."""
    channels, size, _ = dataset.image_shape
    if config.arch == "flux":
        if size % 2:
            raise UserError(f"{size}×{size} images cannot be packed into FLUX's 2×2 tokens: the side must be even")
        model = FluxDenoiser.create(
            size,
            channels,
            dataset.num_classes,
            conditioning.text_dim,
            config.text_tokens,
            **{
                k: getattr(config, k)
                for k in ("num_layers", "num_single_layers", "attention_head_dim", "num_attention_heads")
            },
        )
    else:
        check_unet_levels(size, len(config.block_out_channels))
        model = Denoiser(
            sample_size=size,
            in_channels=channels,
            num_classes=dataset.num_classes,
            block_out_channels=tuple(config.block_out_channels),
            layers_per_block=config.layers_per_block,
            attention=config.attention,
            scale_shift=config.scale_shift,
            text_dim=conditioning.text_dim,
        )
    if conditioning.text_dim:
        model.null_text.copy_(conditioning.null)
    return model


def make_process(config: TrainConfig):
    return RectifiedFlow.create(config.shift) if config.objective == "flow" else VP.create(config.prediction)


@guarded
def train_teacher(config: TrainConfig, run: RunOptions | None = None, dataset: ImageDataset | None = None):
    """Train a teacher. With `run.out`, checkpoints and logs go there and the model is saved there at the end."""
    config = config.validate().resolved()
    run = run or RunOptions()
    with RunFolder(run) as folder:
        dataset = dataset or load_dataset(config.data, "train", image_size=config.image_size)
        tokens = config.text_tokens if config.arch == "flux" else None
        conditioning = new_conditioning(config.conditioning, dataset.name, dataset.class_names, tokens)
        config = replace(config, conditioning=conditioning.kind)
        process = make_process(config)
        torch.manual_seed(config.seed)
        model = make_teacher_network(config, dataset, conditioning)
        objective = Denoising(process, conditioning, config.p_uncond)
        preview = class_preview(process, conditioning)
        fit(model, objective, dataset, config, run, {"data_images": len(dataset)}, preview)
        teacher = Checkpoint.create(
            model.cpu(), process, kind="teacher", dataset=dataset, training=asdict(config), conditioning=conditioning
        )
        folder.save(teacher)
    return teacher
