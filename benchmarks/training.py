"""Training-loop figures on this machine: steps/s for each mixed precision, and how exactly a resume continues a run.

    python benchmarks/training.py [--steps 200] [--batch-size 64] [--out docs/results/training.json]

Precisions are timed interleaved (median of --repeats) so that a noisy machine shifts them alike.
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cfgdistill.data import load_dataset
from cfgdistill.loop import RunOptions
from cfgdistill.train import TrainConfig, train_teacher


def steps_per_s(config, data, repeats: int) -> dict:
    precisions = ["no", "bf16"] + (["fp16"] if torch.cuda.is_available() else [])
    train_teacher(TrainConfig(**{**config, "steps": 5}), data, RunOptions(progress=False))  # warm-up
    times = {p: [] for p in precisions}
    for _ in range(repeats):
        for precision in precisions:
            started = time.perf_counter()
            train_teacher(TrainConfig(**config, mixed_precision=precision), data, RunOptions(progress=False))
            times[precision].append(time.perf_counter() - started)
    return {p: config["steps"] / statistics.median(t) for p, t in times.items()}


def resume_gap(config, data) -> dict:
    """Train 2k steps straight, and k steps then k more from the step-k checkpoint; compare the weights."""
    with tempfile.TemporaryDirectory() as tmp:
        half = config["steps"] // 2
        run = lambda out, **kw: train_teacher(TrainConfig(**config), data, RunOptions(out=Path(tmp) / out, validate_every=0, progress=False, **kw)).model
        straight = run("straight", checkpoint_every=half)
        resumed = run("resumed", checkpoint_every=0, resume=str(Path(tmp) / "straight" / "checkpoints" / f"step-{half:07d}"))
    pairs = list(zip(straight.state_dict().values(), resumed.state_dict().values()))
    return {
        "bitwise_identical": all(torch.equal(a, b) for a, b in pairs),
        "max_abs_difference": max((a - b).abs().max().item() for a, b in pairs),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/results/training.json"))
    args = parser.parse_args()
    data = load_dataset("digits", "train")
    config = {"steps": args.steps, "batch_size": args.batch_size}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    speed = steps_per_s(config, data, args.repeats)
    result = {
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "steps_per_s": speed,
        "bf16_over_fp32": speed["bf16"] / speed["no"],
        "resume": resume_gap(config, data),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
