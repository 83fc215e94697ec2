"""Command-line flags generated from the settings classes: one flag per field, `--recipe` and `--set` for all.

`--help` lists a command's main flags; `--help-all` every flag. A flag not in the short help still works, and
`--set name=value` reaches any field by its name.
"""

import argparse
from dataclasses import MISSING, fields

from ..io import printable
from .commands import COMMANDS
from .kinds import SWITCH, flag_of
from .recipes import RECIPES


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


def add_flag(parser, item, default, full: bool):
    meta = item.metadata
    names = [flag_of(item)] + ([meta["short"]] if meta["short"] else [])
    shown = full or meta.get("main")
    options = dict(dest=item.name, help=meta["help"] if shown else argparse.SUPPRESS, default=default)
    if item.name == "recipe":  # the names, once, in the help text rather than in the usage line
        options.update(metavar="NAME", help=f"{meta['help']}: {', '.join(RECIPES)}")  # the retired: not shown
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


def build_parser(defaults: dict | None = None, full: bool = False) -> Parser:
    """One sub-command per entry of COMMANDS, one flag per field; `defaults` (a recipe's values) replace the
    fields' own defaults of the command they name."""
    parser = Parser(
        prog="cfgdistill", description="Classifier-free guidance and guidance distillation for diffusion models."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (help_text, classes) in COMMANDS.items():
        sub = commands.add_parser(
            name, help=help_text, description=help_text, epilog="`--help-all` lists every setting of the command."
        )
        values = (defaults or {}).get(name, {})
        for cls in classes:
            for item in fields(cls):
                add_flag(sub, item, values.get(item.name, default_of(item)), full)
        sub.add_argument(
            "--set",
            dest="assignments",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="change any setting by its name, e.g. --set warmup_steps=20 (--help-all lists them); repeatable",
        )
    return parser


def assign(command: str, args, assignments: list, error) -> None:
    """Apply `--set key=value` pairs to the parsed `args`, each value read by its field's kind."""
    items = {item.name: item for cls in COMMANDS[command][1] for item in fields(cls)}
    for text in assignments:
        key, sep, value = text.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in items:
            known = ", ".join(sorted(items))
            error(f"--set {text!r}: expected KEY=VALUE with KEY one of: {known}")
        item = items[key]
        setattr(args, key, read(item, value, getattr(args, key), error))


def read(item, text: str, current, error):
    meta = item.metadata
    if text.strip().lower() == "none" and default_of(item) is None:
        return None
    if meta["kind"] is SWITCH:
        if text.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
            error(f"--set {item.name}: expected true or false, got {text!r}")
        return text.strip().lower() in ("true", "1", "yes")
    try:
        value = meta["kind"].parse(text)
    except ValueError as problem:
        error(f"--set {item.name}: {problem}")
    if meta["choices"] and value not in meta["choices"]:
        error(f"--set {item.name}: must be one of {', '.join(meta['choices'])}, got {value!r}")
    return [*(current or []), value] if meta["repeat"] else value
