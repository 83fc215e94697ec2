"""Named recipes: frozen sets of settings, each with what it was measured to give and where (EDM2's presets).

`--recipe NAME` picks one, `--set KEY=VALUE` or a flag changes any field of it; with no `--recipe`, a command
takes the recipe of its data or teacher (`default_recipe`). The figures are those of docs/recipes.md.
"""

from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Recipe:
    note: str  # what it was measured to give, and the report that shows it
    settings: dict = field(default_factory=dict)  # command -> {field: value}

    def __post_init__(self):
        frozen = {k: MappingProxyType(dict(v)) for k, v in self.settings.items()}
        object.__setattr__(self, "settings", MappingProxyType(frozen))

    def values(self, command: str) -> dict:
        """This recipe's settings of `command`, as fresh values (lists are copied)."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self.settings.get(command, {}).items()}


# Fashion-MNIST's distillation: s = 0 to 6, half of each batch on the teacher's guided paths, rows weighted by the
# guidance correction they ask for
FASHION_DISTILL = dict(steps=800, batch_size=48, lr=5e-4, guidance_min=0.0, trajectory_fraction=0.5)
FASHION_DISTILL |= dict(loss_space="guidance")
FASHION_DATA = dict(data="fashion-mnist", steps=4000, batch_size=48)
FASHION_TRAIN = FASHION_DATA | dict(block_out_channels=[16, 32, 64], scale_shift=True)
# the flow UNet: s in [1, 6] with a quarter of the noised rows anchored at s = 1
FLOW_DISTILL = FASHION_DISTILL | dict(guidance_min=1.0, s_one_share=0.25)
FEWSTEP = dict(rounds=6, steps=300, lr=3e-4)  # from the stage-1 student's 64 steps
PIPELINE_DISTILL = dict(steps=1000, batch_size=48, lr=5e-4, guidance_min=1.0, guidance_max=6.0)
PIPELINE_DISTILL |= dict(loss_space="eps", trajectory_fraction=0.5)

RECIPES = {
    "digits": Recipe(
        "digits, 8x8: every gate at 300 distillation steps, 44% of the teacher's time (360 samples per s, "
        "distill_cost/digits_guidance_s_one_300.json); progressive rounds 64 -> 1 steps (fewstep/report.md)",
        {
            "train": dict(data="digits", steps=1200),
            "distill": dict(steps=300, loss_space="guidance", s_one_share=0.25),
            "progressive": FEWSTEP,
        },
    ),
    "fashion": Recipe(
        "Fashion-MNIST with text prompts, VP UNet: every gate at s = 1, 2, 3, 5 in 40 min on 2 cores "
        "(500 samples per s, fashion/report.md)",
        {"train": FASHION_TRAIN, "distill": FASHION_DISTILL},
    ),
    "fashion-flow": Recipe(
        "Fashion-MNIST, rectified-flow UNet: every gate at s = 1, 2, 3, 5 with 800 distillation steps (500 samples, "
        "fashion-flow-s-one/report.md); progressive rounds 64 -> 1 (fewstep-fashion-flow/report.md)",
        {"train": FASHION_TRAIN | dict(objective="flow"), "distill": FLOW_DISTILL, "progressive": FEWSTEP},
    ),
    "pipeline": Recipe(
        "a diffusers pipeline distilled from prompts alone: gates at s = 2, 3, 5 in the stock pipeline on the "
        "latent Fashion-MNIST pipeline (500 samples, fashion-pipeline/report.md)",
        {"distill": PIPELINE_DISTILL},
    ),
    "pipeline-flux": Recipe(
        "a FluxPipeline distilled from prompts alone into FLUX.1 [dev]'s guidance embedder: with --lora-rank 8 "
        "--lr 2e-3 accuracy within 1.1 points and FD within 1.05x at s = 1, 2, 3, 5; full, all but accuracy at "
        "s = 1 (-3.9) (2000 samples, fashion-flux-pipeline, docs/flux-pipeline.md)",
        {"distill": PIPELINE_DISTILL | dict(s_one_share=0.25)},
    ),
    "fashion-flow-apg": Recipe(
        "APG (eta = 0) on the fashion-flow teacher: every gate at s = 2, 3, 5, 2.7-2.8x its teacher's samples/s "
        "(500 samples, fashion-guiders/apg)",
        {"distill": FLOW_DISTILL | dict(guider="apg", guider_option=["eta=0"])},
    ),
    "fashion-flow-interval": Recipe(
        "interval guidance [0.15, 0.8) on the fashion-flow teacher: every gate at s = 2, 3, 5 with 1600 steps, "
        "1.9-2.0x (500 samples, fashion-guiders/interval)",
        {"distill": FLOW_DISTILL | dict(guider="interval", guider_option=["start=0.15", "stop=0.8"], steps=1600)},
    ),
    "fashion-flow-autoguidance": Recipe(
        "autoguidance with half its weight on CFG (give --set guide_model=PATH): every gate at s = 2, 3, 5 with "
        "1600 steps, 3.6-3.8x its three-pass teacher (500 samples, fashion-guiders/autoguidance)",
        {"distill": FLOW_DISTILL | dict(guider="autoguidance", guider_option=["cfg_share=0.5"], steps=1600)},
    ),
    "fashion-flow-negatives": Recipe(
        "a one-pass negative prompt on the fashion-flow teacher: the negated class in 10.6% of samples at s = 3 "
        "(true CFG 4.2%), 1.0-2.4 points lost without a negative (500 samples, fashion-negatives-q)",
        {"distill": FLOW_DISTILL | dict(negatives=0.25, steps=1600)},
    ),
}

# name -> why it went; a run that recorded one still loads, `--recipe NAME` says this
RETIRED_RECIPES = {
    "fashion-flux": "the latent Flux pipeline's students (pipeline-flux) do better at 2000 samples: the LoRA one "
    "passes every gate, the full one all but s = 1 (docs/recipes.md#retired-recipes)",
}


def kind_recipe(data: str | None, objective: str | None, arch: str | None) -> str | None:
    """The recipe measured for a teacher of this data, process and network; None where none was."""
    if data == "digits" and (objective or "vp") == "vp" and (arch or "unet") == "unet":
        return "digits"
    if data == "fashion-mnist":
        if arch == "flux":
            return None  # the pixel-space Flux recipe is retired
        return "fashion-flow" if objective == "flow" else "fashion"
    return None
