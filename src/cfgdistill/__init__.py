"""cfgdistill: classifier-free guidance and guidance distillation for diffusion models."""

import os

# Everything is local: never let diffusers or huggingface_hub reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
