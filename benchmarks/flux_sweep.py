"""Training steps/s of the latent Fashion-MNIST Flux transformer against its width and depth, on this machine.

    python benchmarks/flux_sweep.py --out docs/results/fashion-flux-pipeline/sweep_cpu.json
    python benchmarks/flux_sweep.py --pipeline runs/fashion-flux-pipeline/teacher --out .../speed_by_width_cpu.json

Each size trains for `--steps` timed steps (after two untimed) at the recipe's batch on 4×8×8 latents and
MiniLM-shaped text (16 tokens of 384, pooled 384), the teacher's objective and AdamW: what `make
fashion-flux-pipeline` pays per step. The recipe's size is the widest that fits its time budget.

With `--pipeline`, each width instead replaces that pipeline's transformer (random weights: speed does not
depend on them) and a student copy gets the guidance embedder; both are drawn through the stock
FluxPipeline, batches interleaved, and the student's samples/s over the teacher's true CFG is reported.
"""

import argparse
import json
import time

import torch
from latent_pipeline import LatentRecipe, make_transformer

from cfgdistill.networks.stock_flux import StockFlux
from cfgdistill.training.machine import machine_record

SIZES = [(128, 2, 2), (192, 2, 2), (256, 2, 2), (256, 1, 4), (256, 3, 3), (384, 2, 2)]
TOKENS, DIM = 16, 384
SIZE = dict(height=32, width=32, max_sequence_length=16)  # the pipeline's images and prompt length


def steps_per_s(size: tuple, head_dim: int, batch: int, steps: int) -> tuple:
    torch.manual_seed(0)
    transformer = make_transformer(*size, head_dim)
    null = torch.zeros(TOKENS * DIM + DIM)
    model = StockFlux(transformer, {"tokens": TOKENS, "dim": DIM}, null, (4, 8, 8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, cond = torch.randn(batch, 4, 8, 8), torch.randn(batch, TOKENS * DIM + DIM)
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        loss = (model(x, torch.rand(batch) * 1000, cond) - x).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return steps / (time.perf_counter() - start), sum(p.numel() for p in transformer.parameters())


@torch.no_grad()
def sampling_ratio(folder, size: tuple, head_dim: int, steps: int, batches: int = 4) -> dict:
    """Samples/s of a one-pass student and its CFG teacher at this size, through the stock FluxPipeline."""
    from diffusers import FluxPipeline

    from cfgdistill.networks.stock_flux import add_guidance_embedder

    torch.manual_seed(0)
    pipes = {"teacher": FluxPipeline.from_pretrained(folder)}
    pipes["teacher"].transformer = make_transformer(*size, head_dim).eval()
    pipes["student"] = FluxPipeline.from_pretrained(folder)
    pipes["student"].transformer = add_guidance_embedder(make_transformer(*size, head_dim)).eval()
    calls = {"teacher": dict(true_cfg_scale=3.0, negative_prompt=""), "student": dict(guidance_scale=3.0)}
    seconds = dict.fromkeys(pipes, 0.0)
    for i in range(batches + 1):
        for name, pipe in pipes.items():
            pipe.set_progress_bar_config(disable=True)
            start = time.perf_counter()
            pipe(
                ["a coat"] * 100, num_inference_steps=steps, height=32, width=32, max_sequence_length=16, **calls[name]
            )
            seconds[name] += (time.perf_counter() - start) if i else 0.0  # the first round warms up
    return {"steps": steps, "ratio": seconds["teacher"] / seconds["student"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pipeline", help="a FluxPipeline folder: measure sampling speed instead of training")
    args = parser.parse_args()
    recipe, rows = LatentRecipe("flux"), []
    for size in SIZES[:3] if args.pipeline else SIZES:  # sampling: the widths at 2 + 2 blocks
        rows.append({"width": size[0], "double": size[1], "single": size[2]})
        if args.pipeline:
            rows[-1] |= sampling_ratio(args.pipeline, size, recipe.head_dim, args.steps)
        else:
            rate, parameters = steps_per_s(size, recipe.head_dim, recipe.batch_size, args.steps)
            rows[-1] |= {"parameters": parameters, "steps_per_s": rate, "minutes_per_1000_steps": 1000 / rate / 60}
        print(json.dumps(rows[-1]))
    record = {"batch_size": 100 if args.pipeline else recipe.batch_size, "head_dim": recipe.head_dim, "rows": rows}
    with open(args.out, "w") as f:
        f.write(json.dumps(record | {"pipeline": args.pipeline, "machine": machine_record()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
