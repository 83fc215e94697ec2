"""Settings of `distill`: stage-1 guidance distillation, from a cfgdistill teacher or a diffusers pipeline."""

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .choices import LOSS_SPACES
from .kinds import COUNT, FINITE, FRACTION, IMAGE_SIZE, PATH, POSITIVE, SWITCH, Settings, setting
from .loop import LoopConfig


@dataclass
class TeacherInput(Settings):
    teacher: Path = setting(
        None,
        "teacher checkpoint folder, or a diffusers pipeline (folder or cached hub id)",
        PATH,
        required=True,
        main=True,
        role="input",
    )


@dataclass
class DistillConfig(LoopConfig):
    """Stage 1 of Meng et al.: a one-pass student of the teacher's guided prediction at every s."""

    command = "distill"
    steps: int = setting(1500, "optimizer steps", POSITIVE, main=True)
    warmup_steps: int = setting(50, "learning-rate warm-up steps (at most a tenth of the run)", COUNT)
    data: str | None = setting(None, "training images (default: the teacher's dataset)", role="input")
    guider: str = setting(
        "cfg", "the guidance rule the student learns (cfgdistill.guidance.RULES, docs/guiders.md)", main=True
    )
    guider_option: list | None = setting(None, "KEY=VALUE option of the guider; repeat for several", repeat=True)
    guide_model: str | None = setting(
        None, "autoguidance: the weaker teacher that guides (a folder)", role="input"
    )  # str: JSON
    negatives: float = setting(
        0.0,
        "share of rows whose negative condition is a random class's prompt rather than the null one; > 0 gives the "
        "student a negative input (sample --negative-prompt in one pass)",
        FRACTION,
    )
    guidance_min: float = setting(1.0, "smallest s drawn in training", FINITE, main=True)
    guidance_max: float = setting(6.0, "largest s drawn in training", FINITE, main=True)
    trajectory_fraction: float = setting(
        0.0, "share of each batch on the teacher's own guided DDIM paths instead of noised data (0 to 1)", FRACTION
    )
    trajectory_steps: int = setting(20, "DDIM steps of those paths", POSITIVE)
    s_one_share: float = setting(
        0.0,
        "share of noised-data rows learnt at s = 1, where every rule's target is the teacher's conditional "
        "prediction (the end a student loses first); s = 1 must lie in the range",
        FRACTION,
    )
    loss_space: str = setting(
        "prediction",
        "match the teacher in the model's own output (v or eps), in the eps it "
        "implies, or weighted by the guidance correction each row asks for",
        choices=LOSS_SPACES,
    )

    def check(self):
        if self.guidance_min > self.guidance_max:
            raise UserError(f"guidance-min ({self.guidance_min}) must not exceed guidance-max ({self.guidance_max})")
        if self.s_one_share and not self.guidance_min <= 1 <= self.guidance_max:
            source = f" (recipe {self.recipe}; --set s_one_share=0 turns it off)" if self.recipe else ""
            raise UserError(
                f"--s-one-share needs s = 1 inside the guidance range [{self.guidance_min:g}, "
                f"{self.guidance_max:g}]{source}"
            )


@dataclass
class PipelineOptions(Settings):
    """Prompts (and optionally images) to distill a pipeline on, and how its network is trained."""

    prompts: Path | None = setting(
        None, "pipeline teachers: a text file with one training prompt per line", PATH, main=True, role="input"
    )
    images: Path | None = setting(
        None,
        "pipeline teachers: a folder of images to noise as well (default: only the teacher's own paths)",
        PATH,
        role="input",
    )
    lora_rank: int | None = setting(
        None, "pipeline teachers: train LoRA adapters of this rank on one shared copy of the network", POSITIVE
    )
    resolution: int | None = setting(
        None, "pipeline teachers: image side in pixels to distill at (default: the pipeline's own)", IMAGE_SIZE
    )
    gradient_checkpointing: bool = setting(False, "pipeline teachers: recompute activations to save memory", SWITCH)
