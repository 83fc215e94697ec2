"""The guidance family: rules (rules.py), their registry, and the guided denoiser (denoiser.py).

A new rule is one function in rules.py (or anywhere) and one line in `RULES`.
"""

import functools

from ..errors import UserError
from . import guiders, rules

RULES = {
    "cfg": rules.cfg,
    "rescale": guiders.rescale,
    "interval": guiders.interval,
    "cfg-zero-star": guiders.cfg_zero_star,
    "apg": guiders.apg,
    "autoguidance": guiders.autoguidance,  # takes a guide model: guided(..., guide=model)
}


def get_rule(name: str):
    """The rule registered under `name`."""
    if name not in RULES:
        raise UserError(f"unknown guidance rule {name!r}; choose one of: {', '.join(RULES)}")
    return RULES[name]


PATH_OPTIONS = ("zero_init_steps", "momentum")  # options that make a rule depend on the sampling path


def distillable_rule(name: str, options: dict | None = None):
    """The rule a student is to learn, its options bound."""
    return functools.partial(get_rule(name), **rule_options(name, options))


def on_path(rule) -> bool:
    """Whether a bound rule depends on the sampling path (its step index or memory), not the state alone: such a
    rule is learnt on the teacher's own paths, where each row knows its step and carries its memory."""
    return any(getattr(rule, "keywords", {}).get(key) for key in PATH_OPTIONS)


def parse_options(pairs: list | None) -> dict:
    """["KEY=VALUE", ...] from the command line as {KEY: "VALUE"}."""
    options = {}
    for pair in pairs or []:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise UserError(f"a guider option is KEY=VALUE, got {pair!r}")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def rule_options(name: str, given: dict | None = None) -> dict:
    """The options of rule `name`: its defaults, overridden by `given` (text or numbers), each checked."""
    get_rule(name)
    known, options = guiders.OPTIONS.get(name, {}), {}
    for key, value in (given or {}).items():
        if key not in known:
            names = ", ".join(known) or "none"
            raise UserError(f"guider {name!r} has no option {key!r}; its options: {names}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise UserError(f"guider option {key} must be a number, got {value!r}") from None
        problem = known[key][1](value)
        if problem:
            raise UserError(f"guider option {key} {problem}")
        options[key] = value
    options = {key: default for key, (default, _) in known.items()} | options
    if name == "interval" and not options["start"] < options["stop"]:
        raise UserError(f"guider interval needs start < stop, got {options['start']:g} and {options['stop']:g}")
    return options


from .denoiser import check_guidance, guided, predict_pair  # noqa: E402  (denoiser.py reads get_rule)

__all__ = ["RULES", "check_guidance", "get_rule", "guided", "parse_options", "predict_pair"]
__all__ += ["distillable_rule", "on_path", "rule_options", "rules"]
