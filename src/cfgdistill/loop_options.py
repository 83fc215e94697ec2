"""The training loop's settings, shared by every command that trains (torch-free, like config.py)."""

from dataclasses import dataclass

from .settings import COUNT, POSITIVE, POSITIVE_NUMBER, PROBABILITY, SEED, TEXT, Settings, setting

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


@dataclass
class LoopConfig(Settings):
    """What a training run computes; a resume refuses a checkpoint written under different values."""

    steps: int = setting(2000, "optimizer steps", POSITIVE)
    batch_size: int = setting(64, "images per process and micro-batch", POSITIVE)
    gradient_accumulation_steps: int = setting(
        1, "micro-batches per optimizer step; global batch = batch size x processes x this", POSITIVE
    )
    lr: float = setting(1e-3, "peak learning rate of AdamW (linear warm-up, cosine decay)", POSITIVE_NUMBER)
    warmup_steps: int = setting(100, "learning-rate warm-up steps (at most a tenth of the run)", COUNT)
    p_uncond: float = setting(0.1, "probability of dropping the condition to the null condition", PROBABILITY)
    ema_decay: float = setting(0.999, "decay of the weights' exponential moving average", PROBABILITY)
    mixed_precision: str = setting(
        "auto",
        "autocast precision; auto: bf16 on a GPU that has it, on a CPU the faster of fp32 and bf16 for this "
        "network, timed at the start (a resume keeps the recorded one)",
        TEXT,
        choices=MIXED_PRECISION,
    )
    seed: int = setting(0, "seed of every random draw of the run", SEED)
