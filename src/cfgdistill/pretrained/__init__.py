"""Pretrained diffusers pipelines as teachers: find and check them, encode prompts, write the student pipeline.

- `resolve`: a local pipeline folder or a cached hub id, its family, and why it cannot be distilled;
- `families`: what each supported pipeline class needs (its network, process, prompt encoding, student);
- `prompts`: the prompt table the student learns on, encoded once by the pipeline's own text encoders;
- `export`: the student as a complete pipeline folder that the stock class loads.
"""

from .resolve import is_pipeline, resolve_pipeline

__all__ = ["is_pipeline", "resolve_pipeline"]
