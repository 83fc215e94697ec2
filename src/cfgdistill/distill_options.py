"""Settings of `distill`: stage-1 guidance distillation (torch-free, like config.py)."""

from dataclasses import dataclass

from .errors import UserError
from .loop_options import LoopConfig
from .settings import COUNT, FINITE, FRACTION, POSITIVE, POSITIVE_NUMBER, at_most, setting

LOSS_SPACES = ("prediction", "eps", "guidance")
GATES = ("none", "w")
NEGATIVE_INPUTS = ("additive", "joint")


@dataclass
class DistillConfig(LoopConfig):
    """Stage 1 of Meng et al.: a one-pass student of the teacher's guided prediction at every s."""

    command = "distill"
    steps: int = setting(1500, "optimizer steps", POSITIVE)
    warmup_steps: int = setting(50, "learning-rate warm-up steps (at most a tenth of the run)", COUNT)
    data: str | None = setting(None, "training images (default: the teacher's dataset)")
    guider: str = setting("cfg", "the guidance rule the student learns (cfgdistill.guidance.RULES, docs/guiders.md)")
    guider_option: list | None = setting(None, "KEY=VALUE option of the guider; repeat for several", repeat=True)
    guide_model: str | None = setting(None, "autoguidance: the weaker teacher that guides (a folder)")  # str: JSON
    negatives: float = setting(
        0.0,
        "share of rows whose negative condition is a random class's prompt rather than the null one; > 0 gives the "
        "student a negative input (sample --negative-prompt in one pass)",
        FRACTION,
    )
    composed_negatives: float = setting(
        0.0,
        'share of the negative rows whose positive names the image\'s class and another ("a sandal or a sneaker") '
        "and whose negative is that other class; text prompts only",
        FRACTION,
    )
    negative_input: str = setting(
        "additive",
        "additive: an embedding of the negative alone; joint: an MLP of positive and negative together "
        "(networks/unet.py, JointNegative)",
        choices=NEGATIVE_INPUTS,
    )
    guidance_min: float = setting(1.0, "smallest s drawn in training", FINITE)
    guidance_max: float = setting(6.0, "largest s drawn in training", FINITE)
    trajectory_fraction: float = setting(
        0.0, "share of each batch on the teacher's own guided DDIM paths instead of noised data (0 to 1)", FRACTION
    )
    trajectory_steps: int = setting(20, "DDIM steps of those paths", POSITIVE)
    new_lr_scale: float = setting(
        1.0,
        "learning-rate multiplier for the weights the student adds (its guidance and negative inputs)",
        POSITIVE_NUMBER,
    )
    stop_when_matched: int = setting(
        0,
        "every N steps, sample teacher and student on a small set at the range's ends and middle, and stop once "
        "the gates hold there (0: never)",
        COUNT,
    )
    s_one_share: float = setting(
        0.0,
        "share of noised-data rows learnt at s = 1, where every rule's target is the teacher's conditional "
        "prediction (the end a student loses first); s = 1 must lie in the range",
        FRACTION,
    )
    s_draws: int = setting(
        1,
        "guidance scales each image (or path state) is learnt at, evenly spaced over the "
        "range; one teacher pass serves them all",
        at_most(256),
    )
    guidance_gate: str = setting(
        "none",
        "w: the student's embedding of s is multiplied by w = s − 1, so at s = 1 only the copied weights act "
        "(our UNet only)",
        choices=GATES,
    )
    loss_space: str = setting(
        "prediction",
        "match the teacher in the model's own output (v or eps), in the eps it "
        "implies, or weighted by the guidance correction each row asks for",
        choices=LOSS_SPACES,
    )

    def check(self):
        if self.composed_negatives and not self.negatives:
            raise UserError("--composed-negatives is a share of the negative rows: give --negatives P as well")
        if self.negative_input != "additive" and not self.negatives:
            raise UserError("--negative-input shapes the negative input: give --negatives P as well")
        if self.guidance_min > self.guidance_max:
            raise UserError(f"guidance-min ({self.guidance_min}) must not exceed guidance-max ({self.guidance_max})")
        if self.s_one_share and not self.guidance_min <= 1 <= self.guidance_max:
            raise UserError(
                f"--s-one-share needs s = 1 inside the guidance range [{self.guidance_min:g}, {self.guidance_max:g}]"
            )
