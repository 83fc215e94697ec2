"""diffusers' FluxTransformer2DModel as a cfgdistill network: FLUX's own architecture, teacher and student.

The transformer is stock and saved as its own folder, so `FluxTransformer2DModel.from_pretrained(folder,
subfolder="transformer")` loads it. What FLUX's pipeline adds around it lives in `FluxConditioner`: the
2×2 packing of pixels into tokens with FluxPipeline's position ids, and the condition. A text condition is
MiniLM's token states (in T5's place, `encoder_hidden_states`) followed by its pooled sentence vector (in
CLIP's place, `pooled_projections`); a class label looks up learned tokens and a pooled vector.
"""

import torch
from diffusers import FluxTransformer2DModel, ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

PATCH = 2  # FluxPipeline packs 2×2 latent pixels into one token


def rope_axes(head_dim: int) -> tuple:
    """Rotary dimensions for (text index, row, column) that sum to the head size, each even (FLUX: 16, 56, 56)."""
    first = max(2, head_dim // 16 * 2)
    row = (head_dim - first) // 4 * 2
    return first, row, head_dim - first - row


def pack(x: torch.Tensor) -> torch.Tensor:
    """N×C×H×W → N×(H/2·W/2)×4C, FluxPipeline's `_pack_latents`."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of `pack`, FluxPipeline's `_unpack_latents` without the VAE factor."""
    n, _, channels = tokens.shape
    x = tokens.view(n, h // PATCH, w // PATCH, channels // PATCH**2, PATCH, PATCH).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, channels // PATCH**2, h, w)


def image_ids(h: int, w: int) -> torch.Tensor:
    """(token, 3) position ids (0, row, column) of the packed grid, FluxPipeline's `_prepare_latent_image_ids`."""
    rows, cols = torch.meshgrid(torch.arange(h // PATCH), torch.arange(w // PATCH), indexing="ij")
    return torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3).float()


class FluxConditioner(ModelMixin, ConfigMixin):
    """The condition as FLUX takes it: (encoder_hidden_states, pooled_projections) for each row.

    Text rows arrive encoded, (text_tokens + 1) × text_dim: the tokens, then the pooled vector; the empty
    prompt's, kept as a buffer, is the null condition. Class rows are labels; label `num_classes` is the null.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 8,
        in_channels: int = 1,
        num_classes: int = 10,
        text_dim: int | None = None,
        text_tokens: int = 16,
        class_tokens: int = 4,
        dim: int = 64,
        guidance_range: tuple | None = None,
    ):
        super().__init__()
        if text_dim:
            self.register_buffer("null_text", torch.zeros(text_tokens + 1, text_dim))  # set from "" at training
        else:
            self.label_tokens = nn.Embedding(num_classes + 1, (class_tokens + 1) * dim)
            nn.init.normal_(self.label_tokens.weight, std=0.02)

    @property
    def condition_dim(self) -> int:
        return self.config.text_dim or self.config.dim

    def forward(self, cond: torch.Tensor, dtype) -> tuple:
        if self.config.text_dim:
            rows = cond.to(dtype)
        else:
            rows = self.label_tokens(cond).view(cond.shape[0], self.config.class_tokens + 1, self.config.dim)
        return rows[:, :-1], rows[:, -1]


class FluxDenoiser(nn.Module):
    """`model(x_t, t, cond, s=None)` on images; a student (`guidance_embeds=True`) is fed `guidance=s`."""

    def __init__(self, conditioner: FluxConditioner, transformer: FluxTransformer2DModel):
        super().__init__()
        self.conditioner, self.transformer = conditioner, transformer
        size = conditioner.config.sample_size
        self.register_buffer("img_ids", image_ids(size, size), persistent=False)
        tokens = conditioner.config.text_tokens if conditioner.config.text_dim else conditioner.config.class_tokens
        self.register_buffer("txt_ids", torch.zeros(tokens, 3), persistent=False)  # FLUX: text tokens all at 0

    @classmethod
    def create(cls, sample_size, in_channels, num_classes, text_dim=None, text_tokens=16, **transformer):
        """A teacher; `transformer`: num_layers, num_single_layers, attention_head_dim, num_attention_heads."""
        dim = transformer["attention_head_dim"] * transformer["num_attention_heads"]
        conditioner = FluxConditioner(sample_size, in_channels, num_classes, text_dim, text_tokens, dim=dim)
        width = conditioner.condition_dim
        net = FluxTransformer2DModel(
            in_channels=in_channels * PATCH**2,
            joint_attention_dim=width,
            pooled_projection_dim=width,
            guidance_embeds=False,
            axes_dims_rope=rope_axes(transformer["attention_head_dim"]),
            **transformer,
        )
        return cls(conditioner, net)

    @property
    def parts(self) -> dict:
        """The checkpoint's folders: ours (`denoiser/`) and the stock transformer's (`transformer/`)."""
        return {"denoiser": self.conditioner, "transformer": self.transformer}

    @property
    def null_text(self) -> torch.Tensor:
        return self.conditioner.null_text

    @property
    def config(self):
        return self.conditioner.config

    @property
    def device(self) -> torch.device:
        return self.img_ids.device

    @property
    def takes_guidance(self) -> bool:
        return bool(self.transformer.config.guidance_embeds)

    @property
    def sample_shape(self) -> tuple:
        return (self.config.in_channels, self.config.sample_size, self.config.sample_size)

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor:
        if self.config.text_dim:
            return self.conditioner.null_text.expand(cond.shape[0], -1, -1)
        return torch.full(cond.shape[:1], self.config.num_classes, dtype=torch.long, device=cond.device)

    def forward(self, x_t, t, cond=None, s=None):
        n, _, h, w = x_t.shape
        if cond is None:
            cond = self.null_condition(torch.empty(n, dtype=torch.long, device=x_t.device))
        tokens, pooled = self.conditioner(cond, x_t.dtype)
        guidance = None
        if self.takes_guidance:
            if s is None:
                raise ValueError("a guidance-embedded student needs the guidance scale s")
            guidance = torch.as_tensor(s, dtype=torch.float32, device=x_t.device).expand(n)  # FluxPipeline's
        timestep = torch.as_tensor(t, device=x_t.device).expand(n).to(x_t.dtype) / 1000  # as FluxPipeline passes it
        out = self.transformer(pack(x_t), tokens, pooled, timestep, self.img_ids, self.txt_ids, guidance).sample
        return unpack(out, h, w)

    def with_guidance(self, guidance_range: tuple, negatives=False) -> "FluxDenoiser":
        """The student: the same transformer with `guidance_embeds=True`, every teacher weight copied in and the
        guidance embedder's last layer zero, so that it starts as the teacher's conditional model. A stock Flux
        transformer has no negative input (`distill` refuses `--negatives` for it with one line)."""
        if negatives:
            raise ValueError("FluxTransformer2DModel has no negative input")
        config = {k: v for k, v in self.transformer.config.items() if not k.startswith("_")}
        transformer = FluxTransformer2DModel(**{**config, "guidance_embeds": True})
        copy_weights(self.transformer, transformer, "time_text_embed.guidance_embedder.")
        last = transformer.time_text_embed.guidance_embedder.linear_2
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        conditioner = FluxConditioner(**{**dict(self.config), "guidance_range": tuple(map(float, guidance_range))})
        copy_weights(self.conditioner, conditioner, "")
        return FluxDenoiser(conditioner, transformer).to(self.device)


def copy_weights(source: nn.Module, target: nn.Module, new_prefix: str):
    """Load `source`'s weights into `target`; only weights under `new_prefix` may be new (none if it is "")."""
    missing, unexpected = target.load_state_dict(source.state_dict(), strict=False)
    fresh = [k for k in missing if not (new_prefix and k.startswith(new_prefix))]
    if fresh or unexpected:
        raise ValueError(f"teacher and student differ beyond the guidance input: {fresh + unexpected}")
