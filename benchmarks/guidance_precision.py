"""How far bf16 moves a Flux student's output through its guidance input, beside bf16's own error.

    python benchmarks/guidance_precision.py --student runs/fashion-flux-pipeline/student \
        --out docs/results/fashion-flux-pipeline/guidance_precision_cpu.json

FluxTransformer2DModel casts `guidance` to the network's dtype before multiplying by 1000, so in bf16 the
student sees s rounded to 8 significant bits: steps of 1/128 for s in [1, 2), 1/64 in [2, 4), 1/32 in [4, 8).
On fixed latents, timesteps and prompts, over a fine grid of s, it measures in relative RMS:
- `per_unit_s`: how much the fp32 output moves per unit of s (what the input is for);
- `rounding`: the fp32 network fed the bf16-rounded s against fp32 at s (the rounding alone);
- `bf16`: the bf16 network at s against fp32 at s (everything bf16 does, the rounding included);
- `jump`: the largest change of the bf16 output between neighbouring s of the grid.
"""

import argparse
import copy
import json

import torch
from diffusers import FluxPipeline

from cfgdistill.pretrained.families import FAMILIES
from cfgdistill.training.machine import machine_record

PROMPTS = ["a t-shirt", "a pair of trousers", "a dress", "a coat", "a sneaker", "a bag", "an ankle boot"]


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).flatten(1).norm(dim=1).mean() / b.flatten(1).norm(dim=1).mean())


@torch.no_grad()
def measure(folder, grid: torch.Tensor, rows: int = 56) -> dict:
    family, pipe = FAMILIES["flux"], FluxPipeline.from_pretrained(folder)
    size = family.resolution(pipe)
    cond, null, layout = family.encode(pipe, PROMPTS, size)
    transformer = pipe.transformer.eval().requires_grad_(False)
    full = family.wrap(transformer, null, layout, size, pipe, guided=True)
    half = family.wrap(copy.deepcopy(transformer).to(torch.bfloat16), null, layout, size, pipe, guided=True)
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn(rows, *full.sample_shape, generator=generator)
    t, cond = torch.rand(rows, generator=generator) * 1000, cond[torch.arange(rows) % len(cond)]
    out = {"full": [], "rounded": [], "half": []}
    for s in grid.tolist():
        rounded = float(torch.tensor(s).to(torch.bfloat16))  # what `guidance.to(bf16)` leaves of s
        out["full"].append(full(x_t, t, cond, s))
        out["rounded"].append(full(x_t, t, cond, rounded))
        out["half"].append(half(x_t, t, cond, s))
    f, r, h = (torch.stack(out[k]) for k in ("full", "rounded", "half"))
    step = float(grid[1] - grid[0])
    return {
        "per_unit_s": sum(relative(f[i + 1], f[i]) for i in range(len(grid) - 1)) / (len(grid) - 1) / step,
        "rounding_max": max(relative(r[i], f[i]) for i in range(len(grid))),
        "rounding_mean": sum(relative(r[i], f[i]) for i in range(len(grid))) / len(grid),
        "bf16_mean": sum(relative(h[i], f[i]) for i in range(len(grid))) / len(grid),
        "jump_max": max(relative(h[i + 1], h[i]) for i in range(len(grid) - 1)),
        "distinct_bf16_s": len({float(torch.tensor(s).to(torch.bfloat16)) for s in grid.tolist()}),
        "grid": [grid[0].item(), grid[-1].item(), len(grid)],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ranges = {"s in [1, 2)": (1.0, 1.99), "s in [2, 4)": (2.0, 3.99), "s in [4, 6]": (4.0, 6.0)}
    record = {"student": args.student, "rows": {}}
    for name, (low, high) in ranges.items():
        record["rows"][name] = measure(args.student, torch.linspace(low, high, 101))
        print(name, json.dumps(record["rows"][name]))
    with open(args.out, "w") as f:
        f.write(json.dumps(record | {"machine": machine_record()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
