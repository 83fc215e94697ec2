"""Every setting of every command, declared once: the run configs as dataclasses, presets and choice lists.

This module imports no torch, so the CLI can build its parser (and refuse a bad flag) in milliseconds.
The CLI flags are generated from these fields (flags.py); the Python API takes the same dataclasses.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from .distill_options import LOSS_SPACES, DistillConfig  # noqa: F401  (re-exported)
from .errors import UserError
from .fewstep_options import ProgressiveConfig, StudentInput
from .loop_options import MIXED_PRECISION, LoopConfig  # noqa: F401  (re-exported)
from .presets import PRESETS  # noqa: F401  (re-exported: presets are part of the config)
from .pretrained_options import PipelineOptions
from .settings import (
    COUNT,
    FINITE,
    FLOATS,
    IMAGE_SIZE,
    NAMES,
    PATH,
    POSITIVE,
    POSITIVE_NUMBER,
    PROMPT,
    SEED,
    SWITCH,
    WIDTHS,
    Settings,
    at_most,
    setting,
)

# Choice lists: the library's registries are checked against these in its tests.
SAMPLER_HELP = "diffusers scheduler, or Meng's stochastic sampler (default: ddim for VP, euler for flow models)"
SAMPLERS = ("ddim", "dpm++", "euler", "heun", "stochastic")  # ddim is VP only; stochastic: Meng's Algorithm 3
PREDICTIONS = ("epsilon", "v_prediction")
CONDITIONING = ("class", "text")
OBJECTIVES = ("vp", "flow")  # forward processes (processes.PROCESSES)
ARCHS = ("unet", "flux")  # networks (networks/)
MAX_SAMPLES = 100_000
DEFAULT_GUIDANCE = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


@dataclass
class TrainConfig(LoopConfig):
    """A teacher trained with condition dropout (Ho & Salimans 2022)."""

    command = "train"
    data: str = setting(
        "digits",
        "digits (bundled with scikit-learn), fashion-mnist (Debian package), or a folder with one sub-folder per class",
    )
    objective: str = setting(
        "vp", "forward process: vp (DDPM; eps or v) or flow (rectified flow; velocity)", choices=OBJECTIVES
    )
    arch: str = setting("unet", "network: unet (ours) or flux (diffusers' FluxTransformer2DModel)", choices=ARCHS)
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


@dataclass
class RunOptions(Settings):
    """Where and how often a run writes; these may change between an interruption and its resume."""

    out: Path | None = setting(None, "run folder: the model, checkpoints/ and logs/", PATH, required=True)
    checkpoint_every: int = setting(500, "steps between resumable checkpoints (0: never)", COUNT)
    checkpoints_total_limit: int | None = setting(None, "keep only the newest K checkpoints", POSITIVE)
    resume: str | None = setting(None, "continue from the newest complete checkpoint (latest), or from PATH")
    log_every: int = setting(50, "steps between TensorBoard scalars", POSITIVE)
    validate_every: int = setting(500, "steps between preview grids in TensorBoard (0: never)", COUNT)
    cpu: bool = setting(False, "train on the CPU even where a GPU is present", SWITCH)
    overwrite: bool = setting(
        False,
        "replace a non-empty output folder; a run's old checkpoints are cleared once the new run has passed its checks",
        SWITCH,
    )
    quiet: bool = setting(False, "no progress bars", SWITCH)


@dataclass
class TeacherInput(Settings):
    teacher: Path = setting(
        None, "teacher checkpoint folder, or a diffusers pipeline (folder or cached hub id)", PATH, required=True
    )


@dataclass
class SampleConfig(Settings):
    """What `sample` draws: a teacher guided by its rule (two passes), or a student in one pass."""

    s: float = setting(3.0, "s: 0 unconditional, 1 conditional, > 1 guided", FINITE, flag="--guidance", short="-s")
    steps: int | None = setting(None, "sampling steps (default: a few-step student's own, else 25)", POSITIVE)
    sampler: str | None = setting(None, SAMPLER_HELP, choices=SAMPLERS)
    labels: list | None = setting(None, "comma-separated class indices or names, repeated to fill --n", NAMES)
    prompt: list | None = setting(None, "a text prompt (text models); repeat for several columns", PROMPT, repeat=True)
    negative_prompt: str | None = setting(
        None, "pred = neg + s*(pos - neg): a teacher's second pass, or a student distilled with --negatives", PROMPT
    )
    guider: str | None = setting(None, "a teacher's guidance rule (default cfg; docs/guiders.md); not for students")
    guider_option: list | None = setting(None, "KEY=VALUE option of the guider; repeat for several", repeat=True)
    guide_model: Path | None = setting(None, "autoguidance: the weaker teacher that guides (e.g. trained less)", PATH)
    n: int | None = setting(None, "number of images (default: one per label, or 10 per class)", at_most(MAX_SAMPLES))
    seed: int = setting(0, "image i starts from noise seeded with seed + i", SEED)
    batch_size: int = setting(256, "images per network batch", POSITIVE)
    out: Path | None = setting(None, "PNG grid to write", PATH, required=True)
    out_array: Path | None = setting(None, "also save the samples as float32 NxCxHxW in [-1, 1] (.npy)", PATH)
    quiet: bool = setting(False, "no progress bars", SWITCH)

    def check(self):
        check_seeds(self.seed, self.n or 1)


def check_seeds(seed: int, n: int):
    """Image i is seeded with seed + i: every one of them must fit a random generator."""
    if seed + n > 2**63:
        raise UserError(f"seeds {seed} to {seed + n - 1} do not fit a random generator (0 to 2^63 - 1)")


@dataclass
class ModelInput(Settings):
    model: Path = setting(None, "teacher or student checkpoint folder", PATH, required=True)


@dataclass
class EvaluateConfig(Settings):
    """Quality against s for teacher and student, at the same noise, labels and sampler."""

    guidance: list = setting(list(DEFAULT_GUIDANCE), "comma-separated s values", FLOATS)
    steps: int | None = setting(
        None, "sampling steps (default 25; a few-step student's teacher: the steps its rounds started from)", POSITIVE
    )
    n: int = setting(360, "samples per s and model (at most the held-out size)", at_most(MAX_SAMPLES))
    sampler: str | None = setting(None, SAMPLER_HELP, choices=SAMPLERS)
    seed: int = setting(0, "image i starts from noise seeded with seed + i", SEED)
    prompts: Path | None = setting(None, "pipeline pairs: a prompts file (default: the student's own prompts)", PATH)
    out: Path | None = setting(None, "folder for report.json, report.md, plots and grids", PATH, required=True)
    overwrite: bool = setting(False, "replace a non-empty output folder", SWITCH)
    quiet: bool = setting(False, "no progress bars", SWITCH)

    def check(self):
        check_seeds(self.seed, self.n)


@dataclass
class PairInput(Settings):
    teacher: Path = setting(
        None, "teacher checkpoint folder, or a diffusers pipeline (folder or cached hub id)", PATH, required=True
    )
    student: Path = setting(None, "student checkpoint folder, or the student pipeline folder", PATH, required=True)


@dataclass
class DemoConfig(Settings):
    """Train, distill and compare on the bundled digits."""

    out: Path | None = setting(None, "output folder", PATH, required=True)
    objective: str = setting("vp", "forward process of the teacher: vp or flow", choices=OBJECTIVES)
    train_steps: int = setting(1200, "teacher training steps", POSITIVE)
    distill_steps: int = setting(600, "distillation steps", POSITIVE)
    sample_steps: int = setting(25, "sampling steps of the comparison", POSITIVE)
    n: int = setting(200, "samples per guidance scale for the summary", at_most(MAX_SAMPLES))
    overwrite: bool = setting(False, "replace a non-empty output folder", SWITCH)
    quiet: bool = setting(False, "no progress bars", SWITCH)


# command -> (help, the dataclasses whose fields are its flags)
COMMANDS = {
    "train": ("train a class- or text-conditional teacher with condition dropout", (TrainConfig, RunOptions)),
    "distill": (
        "distill a teacher's guidance into a one-pass student that takes s",
        (TeacherInput, DistillConfig, PipelineOptions, RunOptions),
    ),
    "sample": ("sample a teacher (guided, two passes) or a student (one pass)", (ModelInput, SampleConfig)),
    "evaluate": ("quality against s for teacher and student, side by side", (PairInput, EvaluateConfig)),
    "progressive": (
        "halve a guided student's sampling steps per round, s still an input (stage 2 of Meng et al.)",
        (StudentInput, ProgressiveConfig, RunOptions),
    ),
    "demo": ("train, distill and compare on the bundled digits", (DemoConfig,)),
}
