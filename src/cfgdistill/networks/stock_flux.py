"""A pretrained `FluxPipeline`'s `FluxTransformer2DModel` (without a guidance embedder) as a cfgdistill network.

The student sets `guidance_embeds=True`: FLUX's guidance embedder, fed `guidance = guidance_scale` by the
stock FluxPipeline (×1000 inside, like the timestep), added to the timestep embedding; its last layer
starts at zero, so a new student is the teacher's conditional model.
"""

from contextlib import contextmanager

import torch
from diffusers import FluxTransformer2DModel
from diffusers.models.embeddings import CombinedTimestepGuidanceTextProjEmbeddings
from torch import nn

from .flux import image_ids, pack, unpack
from .stock_unet import half_autocast


def add_guidance_embedder(transformer: FluxTransformer2DModel) -> FluxTransformer2DModel:
    """Give `transformer` (in place) FLUX's guidance embedder, sharing its timestep and text embedders.

    The embedder without guidance stays as `plain_time_text_embed`, so the teacher's view can still run.
    """
    plain = transformer.time_text_embed
    dim, pooled = plain.timestep_embedder.linear_2.out_features, plain.text_embedder.linear_1.in_features
    guided = CombinedTimestepGuidanceTextProjEmbeddings(dim, pooled).to(plain.timestep_embedder.linear_1.weight.device)
    guided.timestep_embedder, guided.text_embedder = plain.timestep_embedder, plain.text_embedder
    nn.init.zeros_(guided.guidance_embedder.linear_2.weight)
    nn.init.zeros_(guided.guidance_embedder.linear_2.bias)
    guided.guidance_embedder.float().requires_grad_(True)
    transformer.time_text_embed = guided
    object.__setattr__(transformer, "plain_time_text_embed", plain)  # not a submodule: not saved twice
    transformer.register_to_config(guidance_embeds=True)
    return transformer


class StockFlux(nn.Module):
    """`model(x_t, t, cond, s=None)` on a FluxPipeline's transformer, on unpacked latents N×C×H×W.

    A condition row is flat: the T5 token states, then the CLIP pooled vector, as `encode_prompt` gives them.
    `guided` runs the student with `guidance = s`; otherwise the transformer runs as the teacher: no
    guidance embedder, its LoRA adapters (if any) off.
    """

    def __init__(self, transformer, layout: dict, null: torch.Tensor, sample_shape: tuple, guided: bool = False):
        super().__init__()
        self.transformer, self.layout, self.guided = transformer, dict(layout), guided
        self.sample_shape = tuple(sample_shape)
        self.register_buffer("null", null.reshape(-1).clone(), persistent=False)

    @property
    def network(self):
        return self.transformer

    @property
    def takes_guidance(self) -> bool:
        return self.guided

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor:
        return self.null.expand(cond.shape[0], -1)

    @contextmanager
    def teacher_view(self):
        transformer = self.transformer
        plain = getattr(transformer, "plain_time_text_embed", None)
        if self.guided or plain is None:
            yield
            return
        guided, transformer.time_text_embed = transformer.time_text_embed, plain
        lora = getattr(transformer, "_hf_peft_config_loaded", False)
        if lora:
            transformer.disable_adapters()
        try:
            yield
        finally:
            transformer.time_text_embed = guided
            if lora:
                transformer.enable_adapters()

    def forward(self, x_t, t, cond=None, s=None):
        n, _, h, w = x_t.shape
        cond = self.null_condition(x_t.new_empty(n)) if cond is None else cond.to(x_t.dtype)
        tokens, dim = self.layout["tokens"], self.layout["dim"]
        states, pooled = cond[:, : tokens * dim].reshape(n, tokens, dim), cond[:, tokens * dim :]
        guidance = None
        if self.guided:
            if s is None:
                raise ValueError("a guidance-embedded student needs the guidance scale s")
            guidance = torch.as_tensor(s, dtype=torch.float32, device=x_t.device).expand(n)  # FluxPipeline's
        timestep = torch.as_tensor(t, device=x_t.device).expand(n).to(x_t.dtype) / 1000
        with self.teacher_view(), half_autocast(self.transformer, x_t.device):
            out = self.transformer(
                hidden_states=pack(x_t),
                timestep=timestep,
                guidance=guidance,
                pooled_projections=pooled,
                encoder_hidden_states=states,
                txt_ids=torch.zeros(tokens, 3, device=x_t.device, dtype=x_t.dtype),
                img_ids=image_ids(h, w).to(x_t.device, x_t.dtype),
            ).sample
        return unpack(out.float(), h, w)
