"""LoRA against full fine-tuning for a pipeline teacher: memory for weights, gradients, optimizer and EMA,
and distillation steps/s, measured on the same prompts, side by side in one process.

    python benchmarks/pipeline_cost.py --teacher runs/fashion-pipeline/teacher --prompts prompts.txt \
        --out docs/results/fashion-pipeline/cost_cpu.json
    python benchmarks/pipeline_cost.py --sd15 --out docs/results/pipelines/sd15_cost_cpu.json

`--sd15` builds a UNet2DConditionModel from Stable Diffusion 1.5's config with random weights (no
download) and measures it with random prompt states, at 64×64 latents (512 px).
"""

import argparse
import json
import time
from pathlib import Path

import torch

from cfgdistill.cli import quiet_libraries
from cfgdistill.config import DistillConfig
from cfgdistill.guidance import get_rule
from cfgdistill.objectives import GuidanceDistillation
from cfgdistill.pretrained.families import FAMILIES
from cfgdistill.pretrained.prompts import PromptConditioning, read_prompts
from cfgdistill.training.machine import machine_record

SD15 = dict(
    sample_size=64,
    cross_attention_dim=768,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    layers_per_block=2,
    attention_head_dim=8,
)


def memory(teacher, student) -> dict:
    """Bytes held for weights (every distinct storage of teacher and student), and per trained weight:
    its gradient, AdamW's two moments and the EMA copy."""
    storages = {}
    for model in (teacher, student):
        for p in model.parameters():
            storages[p.untyped_storage().data_ptr()] = p.untyped_storage().nbytes()
    trained = sum(p.numel() * p.element_size() for p in student.parameters() if p.requires_grad)
    total = {"weights": sum(storages.values()), "gradients": trained, "optimizer": 2 * trained, "ema": trained}
    return {f"{k}_mib": v / 2**20 for k, v in total.items()} | {"total_mib": sum(total.values()) / 2**20}


def steps_per_second(teacher, student, conditioning, process, config, steps: int) -> float:
    objective = GuidanceDistillation(teacher, process, conditioning, config, get_rule("cfg"))
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-5)
    labels = torch.zeros(config.batch_size, dtype=torch.long)
    for step in range(steps + 1):
        if step == 1:  # the first step also starts the teacher's paths
            start = time.perf_counter()
        rows = objective.draw(None, labels, torch.Generator().manual_seed(step))
        objective.loss(student, rows).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps / (time.perf_counter() - start)


def measure(build, rank: int | None, config, steps: int, base_dtype=None) -> dict:
    pipe, conditioning, size = build()
    family = FAMILIES["sd"]
    teacher, student = family.networks(pipe, conditioning.null, conditioning.layout, size, rank, base_dtype)
    student.train()
    row = {"lora_rank": rank, "base_dtype": str(base_dtype or torch.float32).removeprefix("torch.")}
    row["trained_parameters"] = sum(p.numel() for p in student.parameters() if p.requires_grad)
    row |= memory(teacher, student)
    if steps:  # 0: memory only (a full SD-sized student's optimizer would not fit beside it on a small machine)
        process = family.process(pipe, size)
        row["steps_per_s"] = steps_per_second(teacher, student, conditioning, process, config, steps)
    return row


def pipeline_builder(args):
    def build():
        family = FAMILIES["sd"]
        pipe = family.load(args.teacher)
        size = family.resolution(pipe)
        prompts = read_prompts(args.prompts)
        rows, null, layout = family.encode(pipe, prompts, size)
        return pipe, PromptConditioning(prompts, rows, null, layout), size

    return build


def sd15_builder():
    """SD 1.5's UNet from its config and scheduler, random prompt states: the parts the measurement touches."""
    from types import SimpleNamespace

    from diffusers import DDPMScheduler, UNet2DConditionModel

    def build():
        torch.manual_seed(0)
        scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        pipe = SimpleNamespace(unet=UNet2DConditionModel(**SD15), scheduler=scheduler, vae_scale_factor=8)
        rows, null = torch.randn(4, 77 * 768), torch.randn(77 * 768)
        return pipe, PromptConditioning(["p"] * 4, rows, null, {"tokens": 77, "dim": 768}), 512

    return build


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher")
    parser.add_argument("--prompts")
    parser.add_argument("--sd15", action="store_true")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    quiet_libraries()
    build = sd15_builder() if args.sd15 else pipeline_builder(args)
    config = DistillConfig(batch_size=args.batch_size, trajectory_steps=20, guidance_min=1.0, guidance_max=6.0)
    rows = [measure(build, rank, config, args.steps) for rank in (args.rank, None)]
    rows.append(measure(build, args.rank, config, args.steps, torch.bfloat16))  # LoRA on a bf16 base, for GPUs
    report = {"rows": rows, "batch_size": args.batch_size, "steps": args.steps, "machine": machine_record()}
    report["teacher"] = "SD 1.5 config, random weights" if args.sd15 else args.teacher
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
