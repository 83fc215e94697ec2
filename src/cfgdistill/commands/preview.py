"""Preview grids for TensorBoard: one sample per class from the weights being trained."""

import torch

from ..guidance.sampling import generate

PREVIEW_S = 3.0


def class_preview(process, conditioning, steps: int = 20):
    """A function model -> one sample per class at s = 3 (inside a student's range), fixed seeds."""

    def preview(model) -> torch.Tensor:
        s = PREVIEW_S
        if model.config.guidance_range:
            s = min(max(s, model.config.guidance_range[0]), model.config.guidance_range[1])
        cond = conditioning.for_classes(torch.arange(conditioning.num_classes)).to(model.device)
        return generate(model, process, cond, s=s, steps=steps)

    return preview
