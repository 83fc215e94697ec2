"""What each supported pipeline family needs: its stock class, prompt encoding, forward process and student.

A family's student is the teacher's own network with the stock guidance input added and zeroed. With LoRA
it is the same module: the base is frozen and shared, and the teacher is that module with its adapters off
and no guidance input, so a big teacher and its student hold one copy of the weights.
"""

import copy
import math
from pathlib import Path

import torch
from diffusers import (
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.training_utils import cast_training_params

from ..errors import UserError
from ..networks.stock_flux import StockFlux, add_guidance_embedder
from ..networks.stock_unet import StockUNet, add_guidance_input
from ..processes.flow import RectifiedFlow
from ..processes.vp import VP
from .folder import check_fit

# The guidance input only shifts the timestep embedding: the layers that read it (time_emb_proj; Flux's norm
# modulations) must adapt too. The UNet set is diffusers' LCM-LoRA script's; attention alone (rank 8)
# under-guided on the Fashion-MNIST pipeline (docs/pipelines.md).
LORA_TARGETS = {
    "unet": ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2"]
    + ["conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"],
    "transformer": ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
    + ["ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp", "proj_out"]
    + ["norm1.linear", "norm1_context.linear", "norm.linear"],
}
ENCODE_BATCH = 64
T5_TOKENS = 512  # FluxPipeline's largest max_sequence_length (FLUX.1's T5 tokenizer declares 512 too)


def with_lora(network, rank: int, targets: list):
    """Freeze `network` and give it trainable rank-r adapters (B = 0: it still computes the base function)."""
    from peft import LoraConfig

    network.requires_grad_(False)
    network.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets))
    return network


class Family:
    """Shared by every family: prompts encoded in batches, and the (teacher, student) pair."""

    pipeline_class = network = None

    def __init__(self, name: str):
        self.name = name

    def load(self, folder):
        """In float32 (the weights' own dtype is kept by diffusers only when asked): LoRA may halve the base later.
        Safetensors only: a pickled component was refused by `check_folder`, and is never unpickled here."""
        try:
            pipe = self.pipeline_class.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        except Exception as error:  # what check_folder cannot see (a size the network cannot be built at)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"cannot load the pipeline in {folder}: {first}") from None
        check_fit(Path(folder), pipe)
        return pipe

    def resolution(self, pipe) -> int:
        """The stock pipeline's default image side in pixels."""
        return pipe.unet.config.sample_size * pipe.vae_scale_factor

    def call_arguments(self, pipe) -> dict:
        """What the stock call needs beside the prompt to draw what the student was distilled on."""
        side = self.resolution(pipe)
        return {"height": side, "width": side}

    @torch.no_grad()
    def encode(self, pipe, prompts: list, size: int) -> tuple:
        """(rows P×F, the null row F, layout) in the pipeline's own encoding (see the network wrappers)."""
        batches = range(0, len(prompts), ENCODE_BATCH)
        chunks = [self.encode_batch(pipe, prompts[i : i + ENCODE_BATCH], size) for i in batches]
        _, null, layout = chunks[0]
        return torch.cat([rows for rows, _, _ in chunks]).float(), null.float(), layout

    def networks(self, pipe, null, layout, size: int, lora_rank=None, base_dtype=None) -> tuple:
        """(teacher, student): one shared module with LoRA, else a frozen original and a trained copy.

        With LoRA and `base_dtype` (bf16 or fp16) the frozen base is stored in it and the trained weights in
        float32, as diffusers' LoRA scripts do; the networks autocast to meet them.
        """
        base = getattr(pipe, self.network)
        if lora_rank:
            lora = with_lora(base.to(base_dtype or torch.float32), lora_rank, LORA_TARGETS[self.network])
            student = self.add_guidance(lora)
            cast_training_params(student, torch.float32)
            teacher = self.wrap(base, null, layout, size, pipe)
        else:
            teacher = self.wrap(base.requires_grad_(False), null, layout, size, pipe)
            student = self.add_guidance(copy.deepcopy(base).requires_grad_(True))
        return teacher.eval(), self.wrap(student, null, layout, size, pipe, guided=True)


class UNetFamily(Family):
    """Stable Diffusion 1.x/2.x (eps or v) and SDXL (with its pooled embedding and size ids)."""

    network = "unet"

    def __init__(self, name: str):
        super().__init__(name)
        self.pipeline_class = StableDiffusionXLPipeline if name == "sdxl" else StableDiffusionPipeline

    def encode_batch(self, pipe, prompts: list, size: int) -> tuple:
        device = pipe.text_encoder.device if pipe.text_encoder is not None else torch.device("cpu")
        encoded = pipe.encode_prompt(prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True)
        states, null_states = encoded[0], encoded[1]
        layout = {"tokens": states.shape[1], "dim": states.shape[2]}
        if self.name != "sdxl":
            return states.flatten(1), null_states[0].flatten(), layout
        pooled, null_pooled = encoded[2], encoded[3]
        projection = pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else pooled.shape[-1]
        ids = pipe._get_add_time_ids((size, size), (0, 0), (size, size), states.dtype, projection)[0]
        layout["pooled"] = pooled.shape[-1]
        rows = torch.cat([states.flatten(1), pooled, ids.expand(len(prompts), -1)], 1)
        return rows, torch.cat([null_states[0].flatten(), null_pooled[0], ids]), layout

    def process(self, pipe, size: int) -> VP:
        """The teacher's DDPM schedule; x_0 is never clipped (latents are not in [−1, 1])."""
        config = pipe.scheduler.config
        if config.get("prediction_type", "epsilon") not in ("epsilon", "v_prediction"):
            raise UserError(f"the teacher predicts {config['prediction_type']}; cfgdistill distills eps or v")
        return VP(DDPMScheduler.from_config(config, clip_sample=False, thresholding=False))

    def add_guidance(self, unet):
        add_guidance_input(unet)
        unet.time_embedding.cond_proj.requires_grad_(True)
        return unet

    def wrap(self, unet, null, layout, size, pipe, guided=False):
        return StockUNet(unet, layout, null, size // pipe.vae_scale_factor, guided)


class FluxFamily(Family):
    """FluxPipeline with a transformer that has no guidance embedder: T5 token states and CLIP's pooled vector."""

    network, pipeline_class = "transformer", FluxPipeline

    def resolution(self, pipe) -> int:
        """The VAE's sample size (FLUX.1's records 1024), else FluxPipeline's fixed default (128 latents)."""
        return pipe.vae.config.get("sample_size") or pipe.default_sample_size * pipe.vae_scale_factor

    def tokens(self, pipe) -> int:
        """T5 tokens per prompt: the second tokenizer's own length, at most FluxPipeline's 512."""
        return min(T5_TOKENS, pipe.tokenizer_2.model_max_length)

    def call_arguments(self, pipe) -> dict:
        """FluxPipeline pads every prompt to `max_sequence_length` (512 unless told): the student's length."""
        return super().call_arguments(pipe) | {"max_sequence_length": self.tokens(pipe)}

    def encode_batch(self, pipe, prompts: list, size: int) -> tuple:
        device = pipe.text_encoder_2.device if pipe.text_encoder_2 is not None else torch.device("cpu")
        tokens = self.tokens(pipe)
        states, pooled, _ = pipe.encode_prompt(prompts, device=device, max_sequence_length=tokens)
        null_states, null_pooled, _ = pipe.encode_prompt([""], device=device, max_sequence_length=tokens)
        layout = {"tokens": states.shape[1], "dim": states.shape[2]}
        return torch.cat([states.flatten(1), pooled], 1), torch.cat([null_states[0].flatten(), null_pooled[0]]), layout

    def process(self, pipe, size: int) -> RectifiedFlow:
        """The teacher's flow schedule; with dynamic shifting, the shift FluxPipeline uses at this resolution."""
        config = pipe.scheduler.config
        if not config.get("use_dynamic_shifting"):
            return RectifiedFlow(FlowMatchEulerDiscreteScheduler.from_config(config))
        tokens = (self.side(pipe, size) // 2) ** 2
        slope = (config.max_shift - config.base_shift) / (config.max_image_seq_len - config.base_image_seq_len)
        mu = config.base_shift + slope * (tokens - config.base_image_seq_len)  # FluxPipeline's calculate_shift
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(config, use_dynamic_shifting=False, shift=math.exp(mu))
        return RectifiedFlow(scheduler)

    def side(self, pipe, size: int) -> int:
        return 2 * (size // (pipe.vae_scale_factor * 2))  # FluxPipeline.prepare_latents

    def add_guidance(self, transformer):
        return add_guidance_embedder(transformer)

    def wrap(self, transformer, null, layout, size, pipe, guided=False):
        side = self.side(pipe, size)
        return StockFlux(transformer, layout, null, (transformer.config.in_channels // 4, side, side), guided)


FAMILIES = {"sd": UNetFamily("sd"), "sdxl": UNetFamily("sdxl"), "flux": FluxFamily("flux")}
