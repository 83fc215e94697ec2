"""Training-loop figures on this machine: steps/s per mixed precision, channels-last, the data path's share of
a step, and how exactly a resume continues a run.

    python benchmarks/training.py [--data digits] [--block-out-channels 32,64] [--scale-shift] [--steps 200]
                                  [--batch-size 64] [--out docs/results/training.json]

Variants are timed interleaved (median of --repeats) so that a noisy machine shifts them alike.
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cfgdistill import RunOptions, TrainConfig, train_teacher
from cfgdistill.conditioning import new_conditioning
from cfgdistill.data import load_dataset
from cfgdistill.networks import Denoiser
from cfgdistill.objectives import Denoising
from cfgdistill.processes import VP
from cfgdistill.training.loop import global_batch, seeded
from cfgdistill.training.machine import machine_record


def steps_per_s(config, data, repeats: int) -> dict:
    precisions = ["no", "bf16"] + (["fp16"] if torch.cuda.is_available() else [])
    train_teacher(TrainConfig(**{**config, "steps": 5}), RunOptions(quiet=True), data)  # warm-up
    times = {p: [] for p in precisions}
    for _ in range(repeats):
        for precision in precisions:
            started = time.perf_counter()
            train_teacher(TrainConfig(**config, mixed_precision=precision), RunOptions(quiet=True), data)
            times[precision].append(time.perf_counter() - started)
    return {p: config["steps"] / statistics.median(t) for p, t in times.items()}


def data_share(config, data, step_time: float, repeats: int = 20) -> float:
    """The data path of one step (in-memory batch, noise, t, conditions) as a fraction of the whole step."""
    conditioning = new_conditioning(config.get("conditioning") or "class", data.name, data.class_names)
    objective = Denoising(VP.create("v_prediction"), conditioning, 0.1)
    started = time.perf_counter()
    for step in range(1, repeats + 1):
        objective.draw(*global_batch(data, config["batch_size"], 0, step), seeded(0, 0, step))
    return (time.perf_counter() - started) / repeats / step_time


def channels_last_ratio(config, data, repeats: int) -> float:
    """A plain forward+backward step in channels-last over the same step in the default layout (>1: faster)."""
    model = Denoiser(
        sample_size=data.image_shape[-1],
        in_channels=data.image_shape[0],
        block_out_channels=config["block_out_channels"],
        layers_per_block=1,
        attention=False,
        scale_shift=config["scale_shift"],
    )
    x_0, labels = global_batch(data, config["batch_size"], 0, 1)
    t = torch.randint(0, 1000, (len(x_0),))
    times = {}
    for layout in [torch.contiguous_format, torch.channels_last] * repeats:
        model, x = model.to(memory_format=layout), x_0.contiguous(memory_format=layout)
        started = time.perf_counter()
        model(x, t, labels).square().mean().backward()
        times.setdefault(layout, []).append(time.perf_counter() - started)
    return statistics.median(times[torch.contiguous_format]) / statistics.median(times[torch.channels_last])


def resume_gap(config, data) -> dict:
    """Train 2k steps straight, and k steps then k more from the step-k checkpoint; compare the weights."""
    with tempfile.TemporaryDirectory() as tmp:
        half = config["steps"] // 2
        run = lambda out, **kw: (
            train_teacher(
                TrainConfig(**config), RunOptions(out=Path(tmp) / out, validate_every=0, quiet=True, **kw), data
            ).model
        )
        straight = run("straight", checkpoint_every=half)
        resumed = run(
            "resumed", checkpoint_every=0, resume=str(Path(tmp) / "straight" / "checkpoints" / f"step-{half:07d}")
        )
    pairs = list(zip(straight.state_dict().values(), resumed.state_dict().values()))
    return {
        "bitwise_identical": all(torch.equal(a, b) for a, b in pairs),
        "max_abs_difference": max((a - b).abs().max().item() for a, b in pairs),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--block-out-channels", default="32,64")
    parser.add_argument(
        "--scale-shift",
        action="store_true",
        help="the embedding scales and shifts block features, as the fashion-cpu preset",
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/results/training.json"))
    args = parser.parse_args()
    data = load_dataset(args.data, "train")
    widths = [int(w) for w in args.block_out_channels.split(",")]
    config = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "data": args.data,
        "block_out_channels": widths,
        "conditioning": "class",
        "scale_shift": args.scale_shift,
    }
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    speed = steps_per_s(config, data, args.repeats)
    result = {
        "machine": machine_record(),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "steps_per_s": speed,
        "bf16_over_fp32": speed["bf16"] / speed["no"],
        "channels_last_speedup": channels_last_ratio(config, data, args.repeats),
        "data_share_of_step": data_share(config, data, 1 / speed["no"]),
        "data": args.data,
        "block_out_channels": widths,
        "scale_shift": args.scale_shift,
        "resume": resume_gap(config, data),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
