"""The guidance family: rules (rules.py), their registry, and the guided denoiser (denoiser.py).

A new rule is one function in rules.py (or anywhere) and one line in `RULES`.
"""

from ..errors import UserError
from . import rules

RULES = {
    "cfg": rules.cfg,
}


def get_rule(name: str):
    """The rule registered under `name`."""
    if name not in RULES:
        raise UserError(f"unknown guidance rule {name!r}; choose one of: {', '.join(RULES)}")
    return RULES[name]


from .denoiser import check_guidance, guided, predict_pair  # noqa: E402  (denoiser.py reads get_rule)

__all__ = ["RULES", "check_guidance", "get_rule", "guided", "predict_pair", "rules"]
