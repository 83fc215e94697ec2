"""The commands, the settings classes each is configured by, and the recipe each starts from."""

import json
from dataclasses import fields, replace
from pathlib import Path

from ..errors import UserError
from .distill import DistillConfig, PipelineOptions, TeacherInput
from .loop import RunOptions
from .progressive import ProgressiveConfig, StudentInput
from .recipes import RECIPES, RETIRED_RECIPES, kind_recipe
from .sampling import DemoConfig, EvaluateConfig, ModelInput, PairInput, SampleConfig
from .train import TrainConfig

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
TRAINING = {cls.command: cls for cls in (TrainConfig, DistillConfig, ProgressiveConfig)}  # the recipe's commands


def recipe_values(name: str | None, command: str) -> dict:
    """The settings recipe `name` gives `command` (none for no recipe), refusing a recipe without any."""
    if name is None:
        return {}
    if name in RETIRED_RECIPES:
        raise UserError(f"recipe {name} is retired: {RETIRED_RECIPES[name]}")
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    if command not in RECIPES[name].settings:
        has = ", ".join(RECIPES[name].settings)
        raise UserError(f"recipe {name} has no settings for {command} (it has: {has})")
    return RECIPES[name].values(command)


def configure(cls, recipe: str | None = None, **overrides):
    """An instance of the settings class `cls` with recipe `recipe`'s values, then `overrides`."""
    command = getattr(cls, "command", None)
    values = recipe_values(recipe, command) if command else {}
    unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
    if unknown:
        raise UserError(f"{cls.__name__} has no setting {unknown[0]!r}")
    config = replace(cls(), **{**values, **overrides})
    return replace(config, recipe=recipe) if command else config


def default_recipe(command: str, given: dict) -> str | None:
    """The recipe measured for what the command is given (its data, teacher or student); None where none was."""
    if command == "train":
        return kind_recipe(given.get("data"), given.get("objective"), given.get("arch"))
    if command == "distill":
        teacher = Path(given["teacher"])
        if (teacher / "model_index.json").is_file() or (given.get("prompts") and not teacher.is_dir()):
            return pipeline_recipe(teacher)
        name = kind_recipe(*teacher_kind(teacher / "cfgdistill.json", ()))
    elif command == "progressive":
        name = kind_recipe(*teacher_kind(Path(given["student"]) / "cfgdistill.json", ("teacher",)))
    else:
        return None
    return name if name and command in RECIPES[name].settings else None


def pipeline_recipe(ref: Path) -> str:
    """`pipeline-flux` for a FluxPipeline (a folder, or a hub id's cached index), else `pipeline`; a pipeline
    whose index cannot be read gets `pipeline`, and `distill` then says what is wrong with it."""
    index = ref / "model_index.json"
    if not index.is_file():
        from huggingface_hub import try_to_load_from_cache  # no torch: config stays light

        try:
            cached = try_to_load_from_cache(str(ref), "model_index.json")
        except ValueError:  # not a hub id either
            cached = None
        index = Path(cached) if isinstance(cached, str) else index
    try:
        name = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return "pipeline"
    return "pipeline-flux" if name == "FluxPipeline" else "pipeline"


def teacher_kind(record: Path, under: tuple) -> tuple:
    """(data, objective, arch) of the teacher a checkpoint's record names; Nones where it cannot be read (the
    command itself then says why)."""
    try:
        training = json.loads(record.read_text())["training"]
        for key in under:
            training = training[key]
        return training.get("data"), training.get("objective", "vp"), training.get("arch", "unet")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None, None
