"""Named defaults for `train` and `distill` (`--preset NAME`); flags given explicitly still win."""

# s = 1 inside the range, half of each batch on the teacher's guided paths, rows weighted by t and s
FASHION_DISTILL = {
    "steps": 800,
    "batch_size": 48,
    "lr": 5e-4,
    "guidance_min": 0.0,
    "trajectory_fraction": 0.5,
    "loss_space": "guidance",
}

PRESETS = {
    "fashion-cpu": {  # a text-conditioned Fashion-MNIST teacher and student within an hour on 2 CPU cores
        "train": {
            "data": "fashion-mnist",
            "steps": 4000,
            "batch_size": 48,
            "block_out_channels": [16, 32, 64],
            "scale_shift": True,
        },
        "distill": FASHION_DISTILL,
    },
    # FLUX's recipe at the same budget: rectified flow, diffusers' Flux transformer (the size measured fastest
    # that trains in the hour, docs/results/flow/architectures_cpu.json), MiniLM token states; distilled alike
    "fashion-flux-cpu": {
        "train": {
            "data": "fashion-mnist",
            "objective": "flow",
            "arch": "flux",
            "steps": 4000,
            "batch_size": 48,
            "num_layers": 2,
            "num_single_layers": 2,
            "attention_head_dim": 16,
            "num_attention_heads": 4,
        },
        "distill": FASHION_DISTILL,
    },
}

__all__ = ["PRESETS"]
