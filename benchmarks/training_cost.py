"""Training cost on this machine: the precision `--mixed-precision auto` picks, against fp32 and bf16, and our
loop against a bare PyTorch + diffusers loop of the same precision, timed interleaved (median of --repeats).

    python benchmarks/training_cost.py [--recipe digits|fashion] [--steps 100] [--repeats 5]
                                       [--out docs/results/training_cost_digits.json]

The bare loop trains the same network on the same process and batch size: no EMA, clipping, schedule, seeded
per-step draws or checks, and AdamW's default update. Ratios above 1 mean ours is faster.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from run import interleaved, plain_training

from cfgdistill import RECIPES, RunOptions, TrainConfig, train_teacher
from cfgdistill.conditioning import new_conditioning
from cfgdistill.data import load_dataset
from cfgdistill.training.machine import machine_record

TEACHERS = {"digits": {"data": "digits"}, "fashion": RECIPES["fashion"].values("train")}


def auto_choice(recipe: dict, data) -> dict:
    """What `auto` picks for this recipe with an empty cache (so it times the steps), and the probe's figures."""
    old = os.environ.get("CFGDISTILL_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["CFGDISTILL_CACHE"] = cache
        config = TrainConfig(**{**recipe, "steps": 2}, mixed_precision="auto")
        started = time.perf_counter()
        teacher = train_teacher(config, RunOptions(quiet=True), data)
        seconds = time.perf_counter() - started
        probe = next(iter(json.loads((Path(cache) / "precision.json").read_text()).values()))
    if old is None:
        del os.environ["CFGDISTILL_CACHE"]
    else:
        os.environ["CFGDISTILL_CACHE"] = old
    choice = teacher.meta.training["mixed_precision"]  # the run's record names what auto chose
    return {"choice": choice, "probe_step_seconds": probe["seconds"], "run_seconds": seconds}


def timings(recipe: dict, data, steps: int, repeats: int) -> dict:
    """Median seconds of `steps` steps: ours and the bare loop, in fp32 and bf16, interleaved."""
    recipe = {**recipe, "steps": steps}
    config = TrainConfig(**recipe)
    teacher = SimpleNamespace(conditioning=new_conditioning(config.conditioning, data.name, data.class_names))
    fns = {}
    for precision in ("no", "bf16"):
        ours = TrainConfig(**recipe, mixed_precision=precision)
        fns[f"ours {precision}"] = lambda c=ours: train_teacher(c, RunOptions(quiet=True), data)
        fns[f"bare {precision}"] = lambda p=precision: plain_training(teacher, config, data, steps, p == "bf16")
    for fn in fns.values():  # warm-up: first-call costs (allocator, kernels) out of the timed runs
        fn()
    return interleaved(fns, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=TEACHERS, default="digits")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    recipe = TEACHERS[args.recipe]
    data = load_dataset(recipe["data"], "train")
    auto = auto_choice(recipe, data)
    print(json.dumps(auto), flush=True)
    seconds = timings(recipe, data, args.steps, args.repeats)
    print(json.dumps(seconds), flush=True)
    steps_per_s = {name: args.steps / t for name, t in seconds.items()}
    result = {
        "recipe": args.recipe,
        "steps": args.steps,
        "repeats": args.repeats,
        "auto": auto,
        "steps_per_s": steps_per_s,
        "bf16_over_fp32": steps_per_s["ours bf16"] / steps_per_s["ours no"],
        "auto_over_fp32": steps_per_s[f"ours {auto['choice']}"] / steps_per_s["ours no"],
        "ours_over_bare": {p: steps_per_s[f"ours {p}"] / steps_per_s[f"bare {p}"] for p in ("no", "bf16")},
        "machine": machine_record(),
    }
    out = args.out or Path(f"docs/results/training_cost_{args.recipe}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
