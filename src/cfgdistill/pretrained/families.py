"""What each supported pipeline family needs: its stock class, prompt encoding, forward process and student.

A family's student is the teacher's own network with the stock guidance input added and zeroed. With LoRA
it is the same module: the base is frozen and shared, and the teacher is that module with its adapters off
and no guidance input, so a big teacher and its student hold one copy of the weights.
"""

import copy

import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

from ..errors import UserError
from ..networks.stock_unet import StockUNet, add_guidance_input
from ..processes.vp import VP

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # the attention projections, as diffusers' LoRA scripts
ENCODE_BATCH = 64


def with_lora(network, rank: int):
    """Freeze `network` and give it trainable rank-r adapters (B = 0: it still computes the base function)."""
    from peft import LoraConfig

    network.requires_grad_(False)
    network.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
    return network


class UNetFamily:
    """Stable Diffusion 1.x/2.x (eps or v) and SDXL (with its pooled embedding and size ids)."""

    network = "unet"

    def __init__(self, name: str):
        self.name = name
        self.pipeline_class = StableDiffusionXLPipeline if name == "sdxl" else StableDiffusionPipeline

    def load(self, folder, dtype=torch.float32):
        return self.pipeline_class.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)

    @torch.no_grad()
    def encode(self, pipe, prompts: list) -> tuple:
        """(rows P×F, the null row F, layout) in the pipeline's own encoding; see `StockUNet` for the layout."""
        chunks = [self.encode_batch(pipe, prompts[i : i + ENCODE_BATCH]) for i in range(0, len(prompts), ENCODE_BATCH)]
        rows = torch.cat([rows for rows, _, _ in chunks])
        _, null, layout = chunks[0]
        return rows.float(), null.float(), layout

    def encode_batch(self, pipe, prompts: list) -> tuple:
        device = pipe.text_encoder.device if pipe.text_encoder is not None else torch.device("cpu")
        encoded = pipe.encode_prompt(prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True)
        states, null_states = encoded[0], encoded[1]
        layout = {"tokens": states.shape[1], "dim": states.shape[2]}
        if self.name != "sdxl":
            return states.flatten(1), null_states[0].flatten(), layout
        pooled, null_pooled = encoded[2], encoded[3]
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor  # the stock default height and width
        projection = pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else pooled.shape[-1]
        ids = pipe._get_add_time_ids((size, size), (0, 0), (size, size), states.dtype, projection)[0]
        layout["pooled"] = pooled.shape[-1]
        rows = torch.cat([states.flatten(1), pooled, ids.expand(len(prompts), -1)], 1)
        return rows, torch.cat([null_states[0].flatten(), null_pooled[0], ids]), layout

    def process(self, pipe) -> VP:
        """The teacher's DDPM schedule; x_0 is never clipped (latents are not in [−1, 1])."""
        config = pipe.scheduler.config
        if config.get("prediction_type", "epsilon") not in ("epsilon", "v_prediction"):
            raise UserError(f"the teacher predicts {config['prediction_type']}; cfgdistill distills eps or v")
        return VP(DDPMScheduler.from_config(config, clip_sample=False, thresholding=False))

    def networks(self, pipe, null, layout, lora_rank=None) -> tuple:
        """(teacher, student) on the pipeline's UNet: one shared module with LoRA, else a frozen copy and a full one."""
        unet = pipe.unet
        if lora_rank:
            add_guidance_input(with_lora(unet, lora_rank))
            unet.time_embedding.cond_proj.requires_grad_(True)
            teacher = StockUNet(unet, layout, null)
        else:
            teacher = StockUNet(unet.requires_grad_(False), layout, null)
            unet = add_guidance_input(copy.deepcopy(unet).requires_grad_(True))
        return teacher.eval(), StockUNet(unet, layout, null, guided=True)


FAMILIES = {"sd": UNetFamily("sd"), "sdxl": UNetFamily("sdxl")}
