"""What a teacher gives one distillation run, whatever kind of teacher it is."""

from dataclasses import dataclass


@dataclass
class Session:
    """`pair`: the network(s) whose paired prediction the rule combines; `student`: what the loop trains;
    `data`: the rows it draws from; `identity`: what a resume must find unchanged; `preview`: TensorBoard's
    sample grid, or None."""

    pair: object
    student: object
    process: object
    conditioning: object
    data: object
    identity: dict
    preview: object = None
