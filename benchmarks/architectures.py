"""Teacher training speed of each forward process and network on one dataset, timed interleaved.

    python benchmarks/architectures.py [--data fashion-mnist] [--steps 20] [--repeats 3]
                                       [--out docs/results/flow/architectures_cpu.json]

Each variant trains `--steps` steps at the fashion presets' batch size (48) after a warm-up; the median of
`--repeats` interleaved rounds gives its steps/s. The Flux sizes are the candidates for the default.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from cfgdistill import RunOptions, TrainConfig, train_teacher
from cfgdistill.data import load_dataset
from cfgdistill.training.machine import machine_record

UNET = {"block_out_channels": [16, 32, 64], "scale_shift": True}  # the fashion-cpu preset's network


def flux(layers, single, head, heads):
    sizes = dict(num_layers=layers, num_single_layers=single, attention_head_dim=head, num_attention_heads=heads)
    return {"objective": "flow", "arch": "flux", **sizes}


VARIANTS = {
    "vp+unet": {"objective": "vp", **UNET},
    "flow+unet": {"objective": "flow", **UNET},
    "flow+flux 1+2 blocks, 4x32": flux(1, 2, 32, 4),
    "flow+flux 2+2 blocks, 4x32": flux(2, 2, 32, 4),
    "flow+flux 2+4 blocks, 4x32": flux(2, 4, 32, 4),
    "flow+flux 2+2 blocks, 4x16": flux(2, 2, 16, 4),
    "flow+flux 3+3 blocks, 4x24": flux(3, 3, 24, 4),
}


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/results/flow/architectures_cpu.json"))
    args = parser.parse_args()
    data = load_dataset(args.data, "train")
    config = lambda variant, steps: TrainConfig(data=args.data, steps=steps, batch_size=args.batch_size, **variant)
    sizes = {
        name: parameters(train_teacher(config(v, 2), RunOptions(quiet=True), data).model)
        for name, v in VARIANTS.items()
    }
    times = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, variant in VARIANTS.items():
            started = time.perf_counter()
            train_teacher(config(variant, args.steps), RunOptions(quiet=True), data)
            times[name].append(time.perf_counter() - started)
    result = {
        "machine": machine_record(),
        "data": args.data,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "variants": {
            name: {
                "config": VARIANTS[name],
                "parameters": sizes[name],
                "steps_per_s": args.steps / statistics.median(t),
            }
            for name, t in times.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, row in result["variants"].items():
        print(f"{name:32s} {row['parameters'] / 1e6:6.2f}M params  {row['steps_per_s']:6.2f} steps/s")


if __name__ == "__main__":
    main()
