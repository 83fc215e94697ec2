"""The `cfgdistill` command: flags generated from the config dataclasses, and dispatch to the API."""

import argparse
import os
import sys
import warnings
from dataclasses import MISSING, fields

from .config import COMMANDS, PRESETS, SWITCH, flag_of
from .errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def argparse_type(kind):
    """The kind's parser, with its refusal in argparse's terms (exit 2, the flag named)."""

    def parse(text: str):
        try:
            return kind.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = "value"
    return parse


def add_flag(parser, item, default):
    meta = item.metadata
    names = [flag_of(item)] + ([meta["short"]] if meta["short"] else [])
    options = dict(dest=item.name, help=meta["help"], default=default)
    if meta["kind"] is SWITCH:
        options["action"] = argparse.BooleanOptionalAction
    else:
        options.update(type=argparse_type(meta["kind"]), choices=meta["choices"], required=meta["required"])
        if meta["repeat"]:
            options["action"] = "append"
    parser.add_argument(*names, **options)


def default_of(item):
    if item.default is not MISSING:
        return item.default
    return item.default_factory() if item.default_factory is not MISSING else None


def build_parser(preset: str | None = None) -> Parser:
    """One sub-command per entry of config.COMMANDS, one flag per field of its dataclasses."""
    parser = Parser(prog="cfgdistill", description="Classifier-free guidance and guidance distillation for diffusion models.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (help_text, classes) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        for cls in classes:
            values = PRESETS[preset].get(name, {}) if preset and getattr(cls, "command", None) == name else {}
            for item in fields(cls):
                add_flag(sub, item, values.get(item.name, default_of(item)))
        if any(name in p for p in PRESETS.values()):
            sub.add_argument("--preset", choices=sorted(PRESETS), help="named defaults: " + "; ".join(
                f"{key}: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in p.get(name, {}).items())
                for key, p in PRESETS.items()))
    return parser


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
            print(f"teacher saved to {settings[config.RunOptions].out}")
    elif command == "distill":
        api.distill(settings[config.TeacherInput].teacher, settings[config.DistillConfig], settings[config.RunOptions])
        if is_main_process():
            print(f"student saved to {settings[config.RunOptions].out}")
    elif command == "sample":
        sample(api, settings[config.ModelInput].model, settings[config.SampleConfig])
    elif command == "evaluate":
        pair, evaluation = settings[config.PairInput], settings[config.EvaluateConfig]
        api.evaluate(pair.teacher, pair.student, evaluation)
        print((evaluation.out / "report.md").read_text())
    else:
        run_demo(settings[config.DemoConfig])


def sample(api, model, config):
    api.check_outputs(config.validate())
    checkpoint = api.load(model)
    images = api.sample(checkpoint, config)
    passes = "1 pass" if checkpoint.kind == "student" or config.s in (0, 1) else "2 passes (batched)"
    print(f"{len(images)} samples from the {checkpoint.kind} at s = {config.s:g}, {config.steps} steps, "
          f"{passes} per step -> {config.out}")


def main(argv=None) -> int:
    command, settings = parse(argv)
    # The command's own policy, not the library's: everything is local, nothing is reported to a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.showwarning = lambda message, category, *rest, **kw: print(f"cfgdistill: warning: {message}", file=sys.stderr)
    from .training.state import Interrupted

    try:
        run(command, settings)
    except UserError as error:
        print(f"cfgdistill: error: {error}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"cfgdistill: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("cfgdistill: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
