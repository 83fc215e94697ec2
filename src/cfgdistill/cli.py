"""The `cfgdistill` command: parse the generated flags (config/flags.py) into configs and dispatch to the API."""

import os
import sys
import warnings
from dataclasses import fields

from .config import COMMANDS
from .config.commands import TRAINING, default_recipe, recipe_values
from .config.flags import assign, build_parser
from .errors import UserError
from .io import printable


def parse(argv=None) -> tuple:
    """(command, {dataclass: instance}) from the command line: the recipe's values (given by `--recipe`, else
    the one measured for the data or teacher) are the flags' defaults, and `--set` changes any field."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help-all" in argv:
        argv[argv.index("--help-all")] = "--help"
        build_parser(full=True).parse_args(argv)
    args = build_parser().parse_args(argv)
    command = args.command

    def usage(text):
        sys.stderr.write(printable(f"cfgdistill {command}: error: {text}") + "\n")
        sys.exit(2)

    if command in TRAINING:
        recipe = args.recipe or default_recipe(command, vars(args))
        try:
            values = recipe_values(recipe, command)
        except UserError as error:
            usage(error)
        args = build_parser({command: values}).parse_args(argv)
        args.recipe = recipe
    assign(command, args, args.assignments, usage)
    return command, {cls: cls(**{f.name: getattr(args, f.name) for f in fields(cls)}) for cls in COMMANDS[command][1]}


def run(command: str, settings: dict):
    """The command, importing only what it uses (a sample need not load evaluation's metrics)."""
    from . import config
    from .training.accelerator import is_main_process

    if command == "train":
        from .commands.train import train_teacher

        train_teacher(settings[config.TrainConfig], settings[config.RunOptions])
        done = f"teacher saved to {settings[config.RunOptions].out}"
    elif command == "distill":
        from .commands.distill import distill

        teacher, run = settings[config.TeacherInput].teacher, settings[config.RunOptions]
        distill(teacher, settings[config.DistillConfig], run, pipeline=settings[config.PipelineOptions])
        done = f"student saved to {run.out}"
    elif command == "sample":
        done = sample(settings[config.ModelInput].model, settings[config.SampleConfig])
    elif command == "progressive":
        from .commands.progressive import progressive

        run = settings[config.RunOptions]
        progressive(settings[config.StudentInput].student, settings[config.ProgressiveConfig], run)
        done = f"few-step student saved to {run.out}"
    elif command == "evaluate":
        from .commands.evaluate import evaluate

        pair, evaluation = settings[config.PairInput], settings[config.EvaluateConfig]
        evaluate(pair.teacher, pair.student, evaluation)
        done = (evaluation.out / "report.md").read_text()
    else:
        from .commands.demo import run_demo

        run_demo(settings[config.DemoConfig])
        return
    if is_main_process():
        print(printable(done, lines=command == "evaluate"))


def sample(model, config) -> str:
    from .checkpoint import load
    from .commands.sample import sample as draw
    from .guidance.sampling import DEFAULT_STEPS
    from .pretrained import is_pipeline
    from .pretrained.resolve import family_of

    config.validate()
    if is_pipeline(model):  # drawn by its stock class
        source, student = model, family_of(model, students=True)[2]
        steps = config.steps or DEFAULT_STEPS
    else:
        source = load(model)
        student = source.kind == "student"
        grid = source.grid  # a few-step student's own
        steps = config.steps or (len(grid) if grid else DEFAULT_STEPS)
    images = draw(source, config)
    passes = "1 pass" if student or config.s in (0, 1) else "2 passes"
    who = "student" if student else "teacher"
    return f"{len(images)} samples from the {who} at s = {config.s:g}, {steps} steps, {passes} per step -> {config.out}"


def quiet_libraries():
    """No loading bars or advice from diffusers and transformers: cfgdistill reports what matters itself."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging  # diffusers imports it anyway

    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
        library.set_verbosity_error()


def main(argv=None) -> int:
    command, settings = parse(argv)
    # The command's own policy, not the library's: everything is local, nothing is reported to a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.showwarning = lambda message, category, *rest, **kw: print(
        f"cfgdistill: warning: {printable(message)}", file=sys.stderr
    )
    quiet_libraries()
    from .training.state import Interrupted

    try:
        run(command, settings)
    except UserError as error:
        print(f"cfgdistill: error: {printable(error)}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"cfgdistill: {printable(stop)}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("cfgdistill: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
