"""Settings of `sample`, `evaluate` and `demo`: what is drawn, judged and shown."""

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .choices import DEFAULT_GUIDANCE, MAX_SAMPLES, OBJECTIVES, SAMPLER_HELP, SAMPLERS
from .distill import TeacherInput
from .kinds import FINITE, FLOATS, NAMES, PATH, POSITIVE, PROMPT, SEED, SWITCH, Settings, at_most, setting
from .loop import MIXED_PRECISION


@dataclass
class SampleConfig(Settings):
    """What `sample` draws: a teacher guided by its rule (two passes), or a student in one pass."""

    s: float = setting(
        3.0, "s: 0 unconditional, 1 conditional, > 1 guided", FINITE, flag="--guidance", short="-s", main=True
    )
    steps: int | None = setting(
        None, "sampling steps (default: a few-step student's own, else 25)", POSITIVE, main=True
    )
    sampler: str | None = setting(None, SAMPLER_HELP, choices=SAMPLERS, main=True)
    labels: list | None = setting(
        None, "comma-separated class indices or names, repeated to fill --n", NAMES, main=True
    )
    prompt: list | None = setting(
        None, "a text prompt (text models); repeat for several columns", PROMPT, repeat=True, main=True
    )
    negative_prompt: str | None = setting(
        None,
        "pred = neg + s*(pos - neg): a teacher's second pass, or a student distilled with --negatives",
        PROMPT,
        main=True,
    )
    guider: str | None = setting(
        None, "a teacher's guidance rule (default cfg; docs/guiders.md); not for students", main=True
    )
    guider_option: list | None = setting(None, "KEY=VALUE option of the guider; repeat for several", repeat=True)
    guide_model: Path | None = setting(
        None, "autoguidance: the weaker teacher that guides (e.g. trained less)", PATH, role="input"
    )
    n: int | None = setting(
        None, "number of images (default: one per label, or 10 per class)", at_most(MAX_SAMPLES), main=True
    )
    seed: int = setting(0, "image i starts from noise seeded with seed + i", SEED, main=True)
    batch_size: int = setting(256, "images per network batch", POSITIVE)
    out: Path | None = setting(None, "PNG grid to write", PATH, required=True, main=True, role="output")
    out_array: Path | None = setting(
        None, "also save the samples as float32 NxCxHxW in [-1, 1] (.npy)", PATH, role="output"
    )
    quiet: bool = setting(False, "no progress bars", SWITCH, main=True)

    def check(self):
        check_seeds(self.seed, self.n or 1)


def check_seeds(seed: int, n: int):
    """Image i is seeded with seed + i: every one of them must fit a random generator."""
    if seed + n > 2**63:
        raise UserError(f"seeds {seed} to {seed + n - 1} do not fit a random generator (0 to 2^63 - 1)")


@dataclass
class ModelInput(Settings):
    model: Path = setting(None, "teacher or student checkpoint folder", PATH, required=True, main=True, role="input")


@dataclass
class EvaluateConfig(Settings):
    """Quality against s for teacher and student, at the same noise, labels and sampler."""

    guidance: list = setting(list(DEFAULT_GUIDANCE), "comma-separated s values", FLOATS, main=True)
    steps: int | None = setting(
        None,
        "sampling steps (default 25; a few-step student's teacher: the steps its rounds started from)",
        POSITIVE,
        main=True,
    )
    n: int = setting(360, "samples per s and model (at most the held-out size)", at_most(MAX_SAMPLES), main=True)
    sampler: str | None = setting(None, SAMPLER_HELP, choices=SAMPLERS, main=True)
    seed: int = setting(0, "image i starts from noise seeded with seed + i", SEED, main=True)
    prompts: Path | None = setting(
        None, "pipeline pairs: a prompts file (default: the student's own prompts)", PATH, main=True, role="input"
    )
    out: Path | None = setting(
        None, "folder for report.json, report.md, plots and grids", PATH, required=True, main=True, role="output"
    )
    overwrite: bool = setting(False, "replace a non-empty output folder", SWITCH, main=True)
    quiet: bool = setting(False, "no progress bars", SWITCH, main=True)

    def check(self):
        check_seeds(self.seed, self.n)


@dataclass
class PairInput(TeacherInput):
    student: Path = setting(
        None, "student checkpoint folder, or the student pipeline folder", PATH, required=True, main=True, role="input"
    )


@dataclass
class DemoConfig(Settings):
    """Train, distill and compare on the bundled digits."""

    out: Path | None = setting(None, "output folder", PATH, required=True, main=True, role="output")
    objective: str = setting("vp", "forward process of the teacher: vp or flow", choices=OBJECTIVES, main=True)
    train_steps: int = setting(1200, "teacher training steps", POSITIVE, main=True)
    distill_steps: int = setting(600, "distillation steps", POSITIVE, main=True)
    sample_steps: int = setting(25, "sampling steps of the comparison", POSITIVE, main=True)
    n: int = setting(200, "samples per guidance scale for the summary", at_most(MAX_SAMPLES), main=True)
    mixed_precision: str = setting(
        "auto", "autocast precision of training (as train's --mixed-precision)", choices=MIXED_PRECISION, main=True
    )
    overwrite: bool = setting(False, "replace a non-empty output folder", SWITCH, main=True)
    quiet: bool = setting(False, "no progress bars", SWITCH, main=True)
