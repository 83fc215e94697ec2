"""Build a latent Fashion-MNIST pipeline in a stock layout (sd or flux), to distill like a downloaded one.

    python benchmarks/fashion_pipeline.py build --out runs/fashion-pipeline [--layout flux]
    cfgdistill distill --teacher runs/fashion-pipeline/teacher --prompts runs/fashion-pipeline/prompts.txt ...
    cfgdistill evaluate --teacher runs/fashion-pipeline/teacher --student ... --out docs/results/fashion-pipeline

The teacher records its dataset (cfgdistill_data.json), so `evaluate` judges both pipelines, sampled in the
stock class, with the project's Fashion-MNIST classifier and gates.
"""

import argparse
import json
import time
from pathlib import Path

from latent_pipeline import LAYOUTS, LatentRecipe, build

from cfgdistill.cli import quiet_libraries
from cfgdistill.config import RunOptions
from cfgdistill.data import load_dataset
from cfgdistill.data.captions import captions
from cfgdistill.training.machine import machine_record


def build_teacher(args):
    data = load_dataset("fashion-mnist", "train")
    prompts, held_out = captions("fashion-mnist", data.class_names)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (("prompts.txt", prompts), ("held_out.txt", held_out)):  # the second is never trained on
        (out / name).write_text("\n".join(p for c in data.class_names for p in table[c]) + "\n")
    recipe = LatentRecipe(args.layout, vae_steps=args.vae_steps, steps=args.steps, batch_size=args.batch_size)
    start = time.perf_counter()
    build(data, prompts, out, recipe, RunOptions(out=out, overwrite=True, quiet=args.quiet, validate_every=0))
    record = {"build_seconds": time.perf_counter() - start, "recipe": vars(recipe), "machine": machine_record()}
    (out / "build.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build")  # a subcommand, so that the make target reads as the steps it runs
    b.add_argument("--out", required=True)
    b.add_argument("--layout", choices=sorted(LAYOUTS), default="sd")
    b.add_argument("--vae-steps", type=int, default=LatentRecipe.vae_steps)
    b.add_argument("--steps", type=int, default=LatentRecipe.steps, help="the network's training steps")
    b.add_argument("--batch-size", type=int, default=LatentRecipe.batch_size)
    b.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    build_teacher(args)


if __name__ == "__main__":
    main()
