"""Command-line flags generated from the config dataclasses (config.py): one flag per field."""

import argparse
from dataclasses import MISSING, fields

from .config import COMMANDS, PRESETS
from .io import printable
from .settings import SWITCH, flag_of


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit code 2."""

    def error(self, message):
        self.exit(2, printable(f"{self.prog}: error: {message}") + "\n")


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
    parser = Parser(
        prog="cfgdistill", description="Classifier-free guidance and guidance distillation for diffusion models."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (help_text, classes) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        for cls in classes:
            values = PRESETS[preset].get(name, {}) if preset and getattr(cls, "command", None) == name else {}
            for item in fields(cls):
                add_flag(sub, item, values.get(item.name, default_of(item)))
        if any(name in p for p in PRESETS.values()):
            sub.add_argument(
                "--preset",
                choices=sorted(PRESETS),
                help="named defaults: "
                + "; ".join(
                    f"{key}: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in p.get(name, {}).items())
                    for key, p in PRESETS.items()
                ),
            )
    return parser
