"""Named defaults for `train` and `distill` (`--preset NAME`); flags given explicitly still win."""

PRESETS = {
    "fashion-cpu": {  # a text-conditioned Fashion-MNIST teacher and student within an hour on 2 CPU cores
        "train": {
            "data": "fashion-mnist",
            "steps": 4000,
            "batch_size": 48,
            "block_out_channels": [16, 32, 64],
            "scale_shift": True,
        },
        # s = 1 inside the range, half of each batch on the teacher's guided paths, rows weighted by t and s
        "distill": {
            "steps": 800,
            "batch_size": 48,
            "lr": 5e-4,
            "guidance_min": 0.0,
            "trajectory_fraction": 0.5,
            "loss_space": "guidance",
        },
    },
}

__all__ = ["PRESETS"]
