"""The training loop's settings, shared by every command that trains, and where a run writes."""

from dataclasses import dataclass
from pathlib import Path

from .kinds import COUNT, PATH, POSITIVE, POSITIVE_NUMBER, PROBABILITY, SEED, SWITCH, TEXT, Settings, setting
from .recipes import RECIPES, RETIRED_RECIPES

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


@dataclass
class LoopConfig(Settings):
    """What a training run computes; a resume refuses a checkpoint written under different values."""

    recipe: str | None = setting(
        None,
        "named settings measured to work (docs/recipes.md); default: the one for the data or teacher",
        choices=(*RECIPES, *RETIRED_RECIPES),  # a retired name is refused with why, not as unknown
        main=True,
    )
    steps: int = setting(2000, "optimizer steps", POSITIVE, main=True)
    batch_size: int = setting(64, "images per process and micro-batch", POSITIVE, main=True)
    gradient_accumulation_steps: int = setting(
        1, "micro-batches per optimizer step; global batch = batch size x processes x this", POSITIVE
    )
    lr: float = setting(1e-3, "peak learning rate of AdamW (linear warm-up, cosine decay)", POSITIVE_NUMBER, main=True)
    warmup_steps: int = setting(100, "learning-rate warm-up steps (at most a tenth of the run)", COUNT)
    p_uncond: float = setting(0.1, "probability of dropping the condition to the null condition", PROBABILITY)
    ema_decay: float = setting(0.999, "decay of the weights' exponential moving average", PROBABILITY)
    mixed_precision: str = setting(
        "auto",
        "autocast precision; auto: bf16 on a GPU that has it; on a CPU bf16 only where it times at least 1.1x "
        "as fast as fp32 for this network at the start (a resume keeps the recorded one)",
        TEXT,
        choices=MIXED_PRECISION,
    )
    seed: int = setting(0, "seed of every random draw of the run", SEED, main=True)


@dataclass
class RunOptions(Settings):
    """Where and how often a run writes; these may change between an interruption and its resume."""

    out: Path | None = setting(
        None, "run folder: the model, checkpoints/ and logs/", PATH, required=True, main=True, role="output"
    )
    checkpoint_every: int = setting(500, "steps between resumable checkpoints (0: never)", COUNT)
    checkpoints_total_limit: int | None = setting(None, "keep only the newest K checkpoints", POSITIVE)
    resume: str | None = setting(None, "continue from the newest complete checkpoint (latest), or from PATH", main=True)
    log_every: int = setting(50, "steps between TensorBoard scalars", POSITIVE)
    validate_every: int = setting(500, "steps between preview grids in TensorBoard (0: never)", COUNT)
    cpu: bool = setting(False, "train on the CPU even where a GPU is present", SWITCH)
    overwrite: bool = setting(
        False,
        "replace a non-empty output folder; a run's old checkpoints are cleared once the new run has passed its checks",
        SWITCH,
        main=True,
    )
    quiet: bool = setting(False, "no progress bars", SWITCH, main=True)
