"""Forward processes q(x_t | x_0): noising, the training target, the samplers, and one deterministic step.

A process is an object with the interface of `VP`; a new process (rectified flow, say) is a new module
here and one line in `PROCESSES`.
"""

from .vp import VP

PROCESSES = {VP.name: VP}

__all__ = ["PROCESSES", "VP"]
