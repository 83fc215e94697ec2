"""Forward processes q(x_t | x_0): noising, the training target, the samplers, and one deterministic step.

A process is an object with the interface of `VP`: `vp.VP` (DDPM, eps or v) and `flow.RectifiedFlow`
(velocity). A new process is a new module here and one line in `PROCESSES`.
"""

from .flow import RectifiedFlow
from .vp import VP

PROCESSES = {VP.name: VP, RectifiedFlow.name: RectifiedFlow}
OBJECTIVES = tuple(PROCESSES)

__all__ = ["OBJECTIVES", "PROCESSES", "RectifiedFlow", "VP"]
