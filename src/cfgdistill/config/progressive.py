"""Settings of `progressive`: few-step students by progressive distillation."""

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .kinds import COUNT, PATH, POSITIVE, POSITIVE_NUMBER, Settings, setting
from .loop import LoopConfig


@dataclass
class StudentInput(Settings):
    student: Path = setting(
        None,
        "a guidance-distilled student checkpoint (stage 1, or an earlier round)",
        PATH,
        required=True,
        main=True,
        role="input",
    )


@dataclass
class ProgressiveConfig(LoopConfig):
    """Stage 2 of Meng et al.: each round's student lands in one step where its teacher lands in two."""

    command = "progressive"
    start_steps: int | None = setting(
        None, "deterministic sampling steps of round 0 (default: the student's own grid, else 64)", POSITIVE
    )
    rounds: int = setting(4, "rounds; each halves the steps", POSITIVE, main=True)
    steps: int = setting(500, "optimizer steps per round", POSITIVE, flag="--steps-per-round", main=True)
    lr: float = setting(2e-4, "peak learning rate of AdamW in each round", POSITIVE_NUMBER, main=True)
    warmup_steps: int = setting(20, "learning-rate warm-up steps per round", COUNT)

    def check(self):
        if self.start_steps is None:
            return
        if self.start_steps < 2**self.rounds:
            most = self.start_steps.bit_length() - 1
            raise UserError(
                f"--rounds {self.rounds} needs at least {2**self.rounds} start steps; "
                f"--start-steps {self.start_steps} allows at most {most} rounds"
            )
        if self.start_steps % 2**self.rounds:
            raise UserError(
                f"--start-steps {self.start_steps} is not a multiple of 2^{self.rounds}: "
                f"{self.rounds} rounds halve it to a fraction of a step"
            )
