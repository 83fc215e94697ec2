"""Settings of `train`: a teacher trained with condition dropout."""

from dataclasses import dataclass, replace

from ..errors import UserError
from .choices import ARCHS, CONDITIONING, OBJECTIVES, PREDICTIONS
from .kinds import IMAGE_SIZE, POSITIVE_NUMBER, SWITCH, WIDTHS, at_most, setting
from .loop import LoopConfig


@dataclass
class TrainConfig(LoopConfig):
    """A teacher trained with condition dropout (Ho & Salimans 2022)."""

    command = "train"
    data: str = setting(
        "digits",
        "digits (bundled with scikit-learn), fashion-mnist (Debian package), or a folder with one sub-folder per class",
        main=True,
        role="input",
    )
    objective: str = setting(
        "vp", "forward process: vp (DDPM; eps or v) or flow (rectified flow; velocity)", choices=OBJECTIVES, main=True
    )
    arch: str = setting(
        "unet", "network: unet (ours) or flux (diffusers' FluxTransformer2DModel)", choices=ARCHS, main=True
    )
    prediction: str | None = setting(
        None, "what a vp network predicts (default v_prediction; flow predicts the velocity)", choices=PREDICTIONS
    )
    shift: float | None = setting(
        None, "flow: moves training and sampling t toward noise, s·t / (1 + (s − 1)·t) (default 1)", POSITIVE_NUMBER
    )
    conditioning: str | None = setting(
        None,
        "class labels, or text prompts through all-MiniLM-L6-v2 (default: class for digits, text otherwise)",
        choices=CONDITIONING,
    )
    image_size: int | None = setting(
        None, "side in pixels that an image folder's images are centre-cropped and resized to (default 32)", IMAGE_SIZE
    )
    block_out_channels: list | None = setting(None, "unet: widths per level, e.g. 16,32,64 (default 32,64)", WIDTHS)
    layers_per_block: int | None = setting(None, "unet: ResNet blocks per level (default 1)", at_most(8))
    attention: bool = setting(False, "unet: self-attention at the lowest level", SWITCH)
    scale_shift: bool = setting(
        False,
        "unet: timestep, condition and s embeddings scale and shift each ResNet block's features (ADM), not only shift",
        SWITCH,
    )
    num_layers: int | None = setting(None, "flux: double-stream (MMDiT) blocks (default 2)", at_most(64))
    num_single_layers: int | None = setting(None, "flux: single-stream blocks (default 2)", at_most(64))
    attention_head_dim: int | None = setting(
        None, "flux: size of each attention head, even, >= 8 (default 16)", at_most(512)
    )
    num_attention_heads: int | None = setting(None, "flux: attention heads (default 4)", at_most(64))
    text_tokens: int | None = setting(
        None, "flux with text: MiniLM token states the transformer attends to (default 16)", at_most(512)
    )

    def check(self):
        """Refuse a setting the chosen process or network does not have, rather than ignore it."""
        unet = ("block_out_channels", "layers_per_block", "attention", "scale_shift")
        owners = {"prediction": ("objective", "vp"), "shift": ("objective", "flow")}
        owners |= {name: ("arch", "unet") for name in unet}
        owners |= {name: ("arch", "flux") for name in ARCH_DEFAULTS["flux"]}
        for name, (key, value) in owners.items():
            if getattr(self, name) not in (None, False) and getattr(self, key) != value:
                flag = "--" + name.replace("_", "-")
                raise UserError(f"{flag} applies to --{key} {value} only, not to --{key} {getattr(self, key)}")
        if self.attention_head_dim is not None and (self.attention_head_dim % 2 or self.attention_head_dim < 8):
            raise UserError(f"attention-head-dim must be an even number >= 8, got {self.attention_head_dim}")

    def resolved(self) -> "TrainConfig":
        """This config with the defaults of its process and network filled in, as the run records it."""
        defaults = {"vp": {"prediction": "v_prediction"}, "flow": {"shift": 1.0}}[self.objective]
        defaults |= ARCH_DEFAULTS[self.arch]
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})


# Sizes of each network when not given; the flux ones fit a 2-core CPU (docs/flow.md)
ARCH_DEFAULTS = {
    "unet": {"block_out_channels": [32, 64], "layers_per_block": 1},
    "flux": {
        "num_layers": 2,
        "num_single_layers": 2,
        "attention_head_dim": 32,
        "num_attention_heads": 4,
        "text_tokens": 16,
    },
}
