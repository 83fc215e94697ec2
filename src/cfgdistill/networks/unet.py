"""Our UNet on diffusers blocks: the class- or text-conditional teacher and its guidance-embedded student."""

import torch
from diffusers import ModelMixin, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn


class GuidanceEmbedding(nn.Module):
    """Embeds the guidance scale s like a timestep (FLUX's `guidance_in`): sinusoids of 1000·s, then Linear–SiLU–Linear.

    The last layer starts at zero, so a new student behaves exactly like its teacher (DiT/ControlNet habit).
    """

    def __init__(self, dim: int, channels: int = 256, scale: float = 1000.0):
        super().__init__()
        self.proj = Timesteps(channels, flip_sin_to_cos=True, downscale_freq_shift=0, scale=scale)
        self.mlp = TimestepEmbedding(channels, dim)
        nn.init.zeros_(self.mlp.linear_2.weight)
        nn.init.zeros_(self.mlp.linear_2.bias)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.proj(s).to(self.mlp.linear_1.weight.dtype))


class Denoiser(ModelMixin, ConfigMixin):
    """A conditional UNet: `model(x_t, t, cond)` predicts eps or v.

    The condition becomes one vector added to the timestep embedding: a class label through an
    embedding with a learned null row (DiT), or, with `text_dim`, a pooled prompt embedding through
    one Linear layer (FLUX's `vector_in` is an MLP; the linear map generalised better to unseen
    wording in our measurements); the empty prompt's embedding, kept as a buffer, is the null
    condition. A student (`guidance_embedding=True`) also adds an embedding of s there (and, with
    `negative_embedding`, one of a negative condition: one pass of `neg + s·(cond − neg)`), and
    `guidance_range` records the s range it was distilled on. With `scale_shift` that sum scales
    and shifts each ResNet block's normalised features (ADM, FiLM) rather than only shifting them,
    so s can scale what the network draws, as the guidance term does.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 8,
        in_channels: int = 1,
        num_classes: int = 10,
        block_out_channels: tuple = (64, 128),
        layers_per_block: int = 1,
        attention: bool = True,
        guidance_embedding: bool = False,
        guidance_range: tuple | None = None,
        text_dim: int | None = None,
        scale_shift: bool = False,
        negative_embedding: bool = False,
        negative_times_guidance: bool = False,
    ):
        super().__init__()
        levels = len(block_out_channels)
        deep = "Attn" if attention else ""
        self.unet = UNet2DModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=in_channels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            down_block_types=("DownBlock2D",) * (levels - 1) + (f"{deep}DownBlock2D",),
            up_block_types=(f"{deep}UpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            add_attention=attention,
            norm_num_groups=min(32, block_out_channels[0] // 4),
            class_embed_type="identity",
            resnet_time_scale_shift="scale_shift" if scale_shift else "default",
        )
        dim = block_out_channels[0] * 4
        if text_dim:
            self.text_in = nn.Linear(text_dim, dim)
            self.register_buffer("null_text", torch.zeros(text_dim))  # set from the encoder's "" at training
        else:
            self.label_embedding = nn.Embedding(num_classes + 1, dim)
            nn.init.normal_(self.label_embedding.weight, std=0.02)
        self.guidance_in = GuidanceEmbedding(dim) if guidance_embedding else None
        self.negative_in = self.negative_input(dim) if negative_embedding else None

    def negative_input(self, dim: int) -> nn.Module:
        """The negative condition's own input, zero for the null condition (a text negative enters as its
        offset from the empty prompt, a class through an embedding whose null row is fixed at zero), and
        zero-initialised, so a new student is its teacher and "no negative" stays the plain student. With
        `negative_times_guidance` (every new student) it is multiplied by s − 1: at s = 1 every rule returns
        the conditional prediction whatever the negative, and the guidance term grows with s − 1."""
        c = self.config
        if c.text_dim:
            layer = nn.Linear(c.text_dim, dim, bias=False)
        else:
            layer = nn.Embedding(c.num_classes + 1, dim, padding_idx=c.num_classes)
        nn.init.zeros_(layer.weight)
        return layer

    @property
    def takes_negative(self) -> bool:
        return bool(self.config.negative_embedding)

    @property
    def takes_guidance(self) -> bool:
        return bool(self.config.guidance_embedding)

    @property
    def sample_shape(self) -> tuple:
        c = self.config
        return (c.in_channels, c.sample_size, c.sample_size)

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor:
        """ "No condition" for each row of cond: the null class, or the empty prompt's embedding."""
        if self.config.text_dim:
            return self.null_text.expand(cond.shape[0], -1)
        return torch.full_like(cond, self.config.num_classes)

    @property
    def parts(self) -> dict:
        """The checkpoint's folders: this network saves as one, `denoiser/`."""
        return {"denoiser": self}

    def with_guidance(self, guidance_range: tuple, negatives: bool = False) -> "Denoiser":
        """The student: this network plus a zero-initialised guidance embedding (and, with `negatives`, a negative
        input); all other weights are the same."""
        config = {k: v for k, v in self.config.items() if not k.startswith("_")}
        config.update(guidance_embedding=True, guidance_range=tuple(float(v) for v in guidance_range))
        student = Denoiser(**config | dict.fromkeys(("negative_embedding", "negative_times_guidance"), bool(negatives)))
        missing, unexpected = student.load_state_dict(self.state_dict(), strict=False)
        fresh = [k for k in missing if not k.startswith(("guidance_in.", "negative_in."))]
        if fresh or unexpected:
            raise ValueError(f"teacher and student differ beyond the guidance embedding: {fresh + unexpected}")
        return student.to(self.device)

    def forward(self, x_t, t, cond=None, s=None, negative=None):
        if cond is None:
            cond = self.null_condition(torch.empty(x_t.shape[0], dtype=torch.long, device=x_t.device))
        vec = self.text_in(cond.to(x_t.dtype)) if self.config.text_dim else self.label_embedding(cond)
        if self.guidance_in is not None:
            if s is None:
                raise ValueError("a guidance-embedded student needs the guidance scale s")
            s = torch.as_tensor(s, dtype=torch.float32, device=x_t.device).expand(x_t.shape[0])
            vec = vec + self.guidance_in(s)
        if negative is not None:  # None, like the null condition, adds nothing
            if self.negative_in is None:
                raise ValueError("this network has no negative input")
            w = (s - 1).to(vec.dtype)[:, None] if self.config.negative_times_guidance else 1
            vec = vec + self.negative_offset(negative, x_t.dtype) * w
        t = torch.as_tensor(t, device=x_t.device)
        return self.unet(x_t, t, class_labels=vec).sample

    def negative_offset(self, negative, dtype) -> torch.Tensor:
        """What the negative condition adds to the embedding before the s − 1 factor; zero for the null one."""
        if self.config.text_dim:
            return self.negative_in((negative - self.null_text.expand_as(negative)).to(dtype))
        return self.negative_in(negative)
