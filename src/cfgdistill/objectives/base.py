"""The interface between an objective and the training loop."""

import torch


class Objective:
    """What a loop minimises. Subclasses give `name` (the run's kind), `draw` and `loss`."""

    name = "objective"

    def to(self, device):
        """Move any frozen network the loss uses (the teacher, when distilling)."""

    def draw(self, x_0: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> dict:
        """The global batch's rows (a dict of tensors, one row per sample), from the step's generator only."""
        raise NotImplementedError

    def loss(self, model, rows: dict) -> torch.Tensor:
        """The loss on this process's rows."""
        raise NotImplementedError

    def non_finite_cause(self, rows: dict) -> str | None:
        """Why the loss on `rows` is not finite, when the objective can tell (its targets); None otherwise."""
        return None

    def state_dict(self) -> dict:
        """Tensors the objective carries from step to step (none, unless it keeps paths); saved with checkpoints."""
        return {}

    def load_state_dict(self, state: dict):
        pass
