"""The kinds of value a setting takes, each with its one validator, and the `setting` field itself.

A kind checks a value both when a flag is parsed (flags.py) and when a config is validated (the API).
This module imports no torch.
"""

import math
from dataclasses import MISSING, field, fields
from pathlib import Path

from ..errors import UserError


class Kind:
    """A kind of value: how a flag's text becomes it, and what makes it invalid.

    `usage` kinds are refused while the flags are parsed (exit 2); the others when the config is
    validated (exit 1), as a request that parses but cannot be carried out.
    """

    def __init__(self, convert, problem=None, usage=True):
        self.convert, self.problem, self.usage = convert, problem or (lambda value: None), usage

    def parse(self, text: str):
        value = self.convert(text)
        problem = self.problem(value) if self.usage else None
        if problem:
            raise ValueError(problem)
        return value


def _number(cast, noun):
    def convert(text):
        try:
            return cast(text)
        except (TypeError, ValueError):
            raise ValueError(f"{text!r} is not a {noun}") from None

    return convert


def _finite(value):
    values = value if isinstance(value, (list, tuple)) else [value]
    bad = [v for v in values if not (isinstance(v, (int, float)) and math.isfinite(v))]
    return f"{bad[0]!r} is not a finite number" if bad else None


def _float(text):
    value = _number(float, "number")(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _widths(text):
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise ValueError(f"widths must be whole numbers separated by commas, got {text!r}") from None


def _names(text):
    return [item.strip() for item in text.split(",") if item.strip()]


POSITIVE = Kind(
    _number(int, "whole number"),
    lambda v: (None if v < 2**31 else f"must be < 2^31, got {v}") if _whole(v) and v > 0 else f"must be > 0, got {v}",
)


def at_most(high: int) -> Kind:
    """A whole number from 1 to `high`: a size that memory, not the user, bounds."""
    return Kind(
        _number(int, "whole number"),
        lambda v: POSITIVE.problem(v) or (None if v <= high else f"must be at most {high:,}, got {v}"),
    )


POSITIVE_NUMBER = Kind(_float, lambda v: _finite(v) or (None if v > 0 else f"must be > 0, got {v}"))
COUNT = Kind(
    _number(int, "whole number"), lambda v: None if _whole(v) and v >= 0 else f"must be >= 0 (0: never), got {v}"
)
FINITE = Kind(_float, _finite)
SEED = Kind(
    _number(int, "whole number"),
    lambda v: None if _whole(v) and 0 <= v < 2**63 else f"must be a whole number >= 0 and < 2^63, got {v}",
    usage=False,
)
PROBABILITY = Kind(_float, lambda v: _finite(v) or (None if 0 <= v < 1 else f"must be in [0, 1), got {v}"), usage=False)
FRACTION = Kind(_float, lambda v: _finite(v) or (None if 0 <= v <= 1 else f"must be in [0, 1], got {v}"), usage=False)
MAX_WIDTH, MAX_LEVELS = 2048, 6  # far above what this project trains; beyond them a network does not fit memory


def _widths_problem(v):
    if not (v and all(_whole(w) and w > 0 and w % 4 == 0 for w in v)):
        return f"widths must be positive multiples of 4, got {','.join(map(str, v))}"
    if len(v) > MAX_LEVELS or max(v) > MAX_WIDTH:
        return f"widths must be at most {MAX_WIDTH}, in at most {MAX_LEVELS} levels, got {','.join(map(str, v))}"
    return None


WIDTHS = Kind(_widths, _widths_problem)
FLOATS = Kind(
    lambda text: [_float(item) for item in text.split(",") if item.strip()],
    lambda v: _finite(v) or (None if v else "must list at least one number"),
)
NAMES = Kind(_names)
TEXT = Kind(str)


def _utf8(value):
    for item in value if isinstance(value, list) else [value]:
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            return f"{item.encode('utf-8', 'surrogateescape')[:40]!r} is not valid UTF-8 text"
        except AttributeError:
            return f"{item!r} is not text"
    return None


PROMPT = Kind(str, _utf8)
PATH = Kind(Path)
SWITCH = Kind(bool)
IMAGE_SIZE = Kind(
    _number(int, "whole number"),
    lambda v: None if _whole(v) and 8 <= v <= 2048 else f"must be 8 to 2048 pixels, got {v}",
    usage=False,
)


def setting(default=MISSING, help="", kind=TEXT, *, choices=None, flag=None, short=None, **more):
    """A dataclass field that is also a flag: `--name-with-dashes`, unless `flag` names it otherwise.

    `more`: `required`, `repeat` (the flag may be given several times), `main` (shown by `--help`; the others
    by `--help-all`, and `--set name=value` reaches every one), `role` ("input": a path the command reads and
    never writes; "output": a path it writes)."""
    unknown = set(more) - {"required", "repeat", "main", "role"}
    if unknown:
        raise TypeError(f"setting() got unexpected options {sorted(unknown)}")
    meta = dict(help=help, kind=kind, choices=choices, flag=flag, short=short, required=False, repeat=False)
    meta |= dict(main=False, role=None) | more
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def flag_of(item) -> str:
    return item.metadata.get("flag") or "--" + item.name.replace("_", "-")


class Settings:
    """Validation shared by every config: each field by its kind, then the config's own cross-field checks."""

    def validate(self):
        for item in fields(self):
            value, kind = getattr(self, item.name), item.metadata.get("kind")
            if kind is None or value is None:
                continue
            problem = self._problem(item, value, kind)
            if problem:
                name = flag_of(item).lstrip("-")
                raise UserError(f"{name} {problem}" if problem.startswith("must") else f"{name}: {problem}")
        self.check()
        return self

    @staticmethod
    def _problem(item, value, kind):
        choices = item.metadata.get("choices")
        if choices and value not in choices:
            return f"must be one of {', '.join(choices)}, got {value!r}"
        return kind.problem(value)

    def check(self):
        """Checks that involve more than one field."""
