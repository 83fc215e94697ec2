"""A pretrained pipeline's `UNet2DConditionModel` (Stable Diffusion 1.x/2.x, SDXL) as a cfgdistill network.

The student is the same UNet with `time_cond_proj_dim` set: `time_embedding.cond_proj` adds an embedding of
w = s − 1 to the timestep embedding, which is what the stock pipelines feed when that field is set (LCM's
convention, Meng et al.'s w), and they then run one pass per step. The layer starts at zero, so a new
student is the teacher's conditional model.
"""

from contextlib import nullcontext

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from torch import nn

GUIDANCE_DIM = 256  # LCM's time_cond_proj_dim


def guidance_scale_embedding(s: torch.Tensor, dim: int) -> torch.Tensor:
    """The stock pipelines' embedding of w = s − 1, through their own method so that it matches bit for bit."""
    w = (torch.as_tensor(s).double() - 1).float().reshape(-1)
    return StableDiffusionPipeline.get_guidance_scale_embedding(None, w, embedding_dim=dim)


def half_autocast(network, device: torch.device):
    """Autocast to the frozen weights' dtype when they are stored in bf16 or fp16 (a LoRA base on a GPU), so
    that float32 inputs, adapters and guidance input meet them; a no-op for float32 weights."""
    dtype = next((p.dtype for p in network.parameters() if not p.requires_grad), torch.float32)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype in (torch.bfloat16, torch.float16))


def add_guidance_input(unet: UNet2DConditionModel, dim: int = GUIDANCE_DIM) -> UNet2DConditionModel:
    """Give `unet` (in place) a zero-initialised `cond_proj` and record `time_cond_proj_dim` in its config."""
    linear_1 = unet.time_embedding.linear_1
    proj = nn.Linear(dim, linear_1.in_features, bias=False).to(linear_1.weight.device, torch.float32)
    nn.init.zeros_(proj.weight)
    unet.time_embedding.cond_proj = proj
    unet.register_to_config(time_cond_proj_dim=dim)
    return unet


class StockUNet(nn.Module):
    """`model(x_t, t, cond, s=None)` on a pipeline's UNet, in its latent space.

    A condition row is flat: the prompt's token states, then (SDXL) its pooled embedding and the six size
    ids, as the pipeline's `encode_prompt` and `_get_add_time_ids` give them; `null` is the pipeline's
    own unconditional row (the empty prompt, or SDXL's zeros). `guided` runs the student (with s);
    otherwise the UNet runs as the teacher, its LoRA adapters (if any) switched off.
    """

    def __init__(self, unet: UNet2DConditionModel, layout: dict, null: torch.Tensor, side: int, guided: bool = False):
        super().__init__()
        self.unet, self.layout, self.guided = unet, dict(layout), guided
        self.sample_shape = (unet.config.in_channels, side, side)  # latents at the distilled resolution
        self.register_buffer("null", null.reshape(-1).clone(), persistent=False)

    @property
    def network(self):
        return self.unet

    @property
    def takes_guidance(self) -> bool:
        return self.guided

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor:
        return self.null.expand(cond.shape[0], -1)

    def split(self, cond: torch.Tensor) -> tuple:
        """(token states N×L×D, added_cond_kwargs or None) from flat rows."""
        tokens, dim, pooled = self.layout["tokens"], self.layout["dim"], self.layout.get("pooled", 0)
        states = cond[:, : tokens * dim].reshape(-1, tokens, dim)
        if not pooled:
            return states, None
        rest = cond[:, tokens * dim :]
        return states, {"text_embeds": rest[:, :pooled], "time_ids": rest[:, pooled:]}

    def adapters_off(self):
        """The teacher's view of a LoRA student: its adapters disabled for the duration."""
        if self.guided or not getattr(self.unet, "_hf_peft_config_loaded", False):
            return nullcontext()
        return AdaptersOff(self.unet)

    def forward(self, x_t, t, cond=None, s=None):
        n = x_t.shape[0]
        cond = self.null_condition(x_t.new_empty(n)) if cond is None else cond
        states, added = self.split(cond.to(x_t.dtype))
        timestep_cond = None
        if self.guided:
            if s is None:
                raise ValueError("a guidance-embedded student needs the guidance scale s")
            s = torch.as_tensor(s, device=x_t.device).expand(n)
            embedding = guidance_scale_embedding(s.cpu(), self.unet.config.time_cond_proj_dim)
            timestep_cond = embedding.to(x_t.device, x_t.dtype)
        t = torch.as_tensor(t, device=x_t.device).expand(n)
        with self.adapters_off(), half_autocast(self.unet, x_t.device):
            out = self.unet(x_t, t, states, timestep_cond=timestep_cond, added_cond_kwargs=added)
        return out.sample.float()


class AdaptersOff:
    """`with AdaptersOff(unet):` runs the base weights, then switches the adapters back on."""

    def __init__(self, unet):
        self.unet = unet

    def __enter__(self):
        self.unet.disable_adapters()

    def __exit__(self, *exc):
        self.unet.enable_adapters()
