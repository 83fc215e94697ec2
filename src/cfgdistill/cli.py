"""The `cfgdistill` command: parse the generated flags (flags.py) into configs and dispatch to the API."""

import os
import sys
import warnings
from dataclasses import fields

from .config import COMMANDS
from .errors import UserError
from .flags import build_parser
from .io import printable


def parse(argv=None) -> tuple:
    """(command, {dataclass: instance}) from the command line; a preset's values are the flags' defaults."""
    args = build_parser().parse_args(argv)
    if getattr(args, "preset", None):
        args = build_parser(args.preset).parse_args(argv)
    _, classes = COMMANDS[args.command]
    return args.command, {cls: cls(**{f.name: getattr(args, f.name) for f in fields(cls)}) for cls in classes}


def run(command: str, settings: dict):
    from . import api, config
    from .pipelines.demo import run_demo
    from .training.accelerator import is_main_process

    if command == "train":
        api.train_teacher(settings[config.TrainConfig], settings[config.RunOptions])
        if is_main_process():
            print(printable(f"teacher saved to {settings[config.RunOptions].out}"))
    elif command == "distill":
        teacher, run = settings[config.TeacherInput].teacher, settings[config.RunOptions]
        api.distill(teacher, settings[config.DistillConfig], run, pipeline=settings[config.PipelineOptions])
        if is_main_process():
            print(printable(f"student saved to {run.out}"))
    elif command == "sample":
        sample(api, settings[config.ModelInput].model, settings[config.SampleConfig])
    elif command == "progressive":
        run = settings[config.RunOptions]
        api.progressive(settings[config.StudentInput].student, settings[config.ProgressiveConfig], run)
        if is_main_process():
            print(printable(f"few-step student saved to {run.out}"))
    elif command == "evaluate":
        pair, evaluation = settings[config.PairInput], settings[config.EvaluateConfig]
        api.evaluate(pair.teacher, pair.student, evaluation)
        print(printable((evaluation.out / "report.md").read_text(), lines=True))
    else:
        run_demo(settings[config.DemoConfig])


def sample(api, model, config):
    from .pipelines.sample import DEFAULT_STEPS
    from .pretrained import is_pipeline
    from .pretrained.resolve import family_of

    api.check_outputs(config.validate())
    if is_pipeline(model):  # drawn by its stock class
        source, student = model, family_of(model, students=True)[2]
        steps = config.steps or DEFAULT_STEPS
    else:
        source = api.load(model)
        student = source.kind == "student"
        grid = source.grid  # a few-step student's own
        steps = config.steps or (len(grid) if grid else DEFAULT_STEPS)
    images = api.sample(source, config)
    passes = "1 pass" if student or config.s in (0, 1) else "2 passes"
    print(
        printable(
            f"{len(images)} samples from the {'student' if student else 'teacher'} at s = {config.s:g}, "
            f"{steps} steps, {passes} per step -> {config.out}"
        )
    )


def quiet_libraries():
    """No loading bars or advice from diffusers and transformers: cfgdistill reports what matters itself."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

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
