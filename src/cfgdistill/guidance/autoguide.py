"""Autoguidance's two models as one teacher: the main model's conditional prediction, and a weaker guide's
conditional prediction in the unconditional one's place (Karras et al. 2024).

With `cfg_share` β > 0 the guidance weight is split between the guide's direction and CFG's, as the paper does
for text-to-image (its appendix B.2): cond + (s − 1)·[(1 − β)(cond − guide) + β(cond − uncond)]. That is
autoguidance against the reference (1 − β)·guide + β·uncond, so the pair returns that reference, and the rule
stays one formula. It costs a third pass: the main model's unconditional one.

`predict_pair` asks a model for its pair through `pair()` when it has one, so sampling, distillation and
teacher paths treat this pair like any teacher.
"""

from pathlib import Path

import torch

from ..errors import UserError


class GuidedPair(torch.nn.Module):
    """`forward` is the main model's; `pair(x_t, t, cond)` gives (main conditional prediction, reference)."""

    def __init__(self, model, guide, cfg_share: float = 0.0):
        super().__init__()
        self.model, self.guide, self.cfg_share = model, guide, float(cfg_share)

    def forward(self, x_t, t, cond=None, *args, **kwargs):
        return self.model(x_t, t, cond, *args, **kwargs)

    @torch.no_grad()
    def pair(self, x_t, t, cond) -> tuple:
        beta, guide = self.cfg_share, self.guide(x_t, t, cond)
        if not beta:
            return self.model(x_t, t, cond), guide
        both = torch.cat([cond, self.model.null_condition(cond)])
        pred_cond, pred_uncond = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), both).chunk(2)
        return pred_cond, (1 - beta) * guide + beta * pred_uncond

    def __getattr__(self, name):  # config, sample_shape, null_condition, ...: the main model's
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("model"), name)


def check_guide(teacher, guide):
    """The weaker model of autoguidance: a teacher of the same process, prediction, image shape and conditions."""
    if guide.kind != "teacher":
        raise UserError("the guide model must be a teacher (a student has no conditional pass of its own)")
    same = lambda c: (c.meta.process, c.process.prediction_type, tuple(c.model.sample_shape))  # noqa: E731
    if same(guide) != same(teacher):
        raise UserError("the guide model must use the teacher's forward process, prediction and image shape")
    if guide.conditioning.kind != teacher.conditioning.kind or guide.class_names != teacher.class_names:
        raise UserError("the guide model must take the teacher's conditions (the same classes or text encoder)")
    return guide


def load_guide(teacher, path) -> object:
    """The guide checkpoint at `path`, checked against `teacher`."""
    from ..checkpoint import load

    if not Path(path).is_dir():
        raise UserError(f"the guide model {path} does not exist")
    return check_guide(teacher, load(path))
