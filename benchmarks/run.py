"""Benchmarks, measured side by side in one run: quality against s, student vs teacher, ours vs a plain diffusers loop.

    python benchmarks/run.py --models demo-out --out docs/results      (or: make bench)
    python benchmarks/run.py --models runs/fashion --out docs/results/fashion --speed-only   (any checkpoint pair)

Absolute times on a shared machine mean little; the ratios are what to read.
"""

import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

from cfgdistill import EvaluateConfig, RunOptions, TrainConfig, UserError, evaluate, load, train_teacher
from cfgdistill.commands.train import make_process, make_teacher_network
from cfgdistill.config.flags import Parser, argparse_type
from cfgdistill.config.kinds import POSITIVE
from cfgdistill.data import load_dataset
from cfgdistill.evaluation.markdown import speed_lines, write_report
from cfgdistill.guidance.sampling import generate, initial_noise
from cfgdistill.networks import FluxDenoiser
from cfgdistill.networks.flux import pack
from cfgdistill.training.machine import machine_record


def plain_scheduler(process):
    """The deterministic diffusers sampler of the model's process: DDIM for VP, flow-matching Euler for flow."""
    if process.name == "flow":
        return FlowMatchEulerDiscreteScheduler.from_config(process.schedule.config)
    return DDIMScheduler.from_config(process.schedule.config, timestep_spacing="trailing")


@torch.no_grad()
def plain_cfg_loop(model, process, cond, s, steps, seed=0):
    """CFG sampling written directly on diffusers: DDIM or Euler, cond and uncond batched, nothing else."""
    scheduler = plain_scheduler(process)
    scheduler.set_timesteps(steps)
    x = initial_noise(range(seed, seed + len(cond)), model.sample_shape)
    both = torch.cat([cond, model.null_condition(cond)])
    for t in scheduler.timesteps:
        pred_cond, pred_uncond = model(torch.cat([x, x]), t, both).chunk(2)
        x = scheduler.step(pred_uncond + s * (pred_cond - pred_uncond), t, x).prev_sample
    return x.clamp(-1, 1)


def stock_flux(folder: Path) -> tuple:
    """The checkpoint's transformer and scheduler, loaded by stock diffusers from their folders; our conditioner."""
    transformer = FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer").eval()
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    return transformer, scheduler, load(folder).model.conditioner


@torch.no_grad()
def stock_flux_loop(stock: tuple, cond, s, steps, seed=0):
    """A Flux student run as FluxPipeline runs one: packed tokens, guidance=s, one pass per step."""
    transformer, scheduler, conditioner = stock
    n, channels, size = len(cond), conditioner.config.in_channels, conditioner.config.sample_size
    tokens, pooled = conditioner(cond, torch.float32)
    ids = FluxPipeline._prepare_latent_image_ids(n, size // 2, size // 2, "cpu", torch.float32)
    txt_ids, guidance = torch.zeros(tokens.shape[1], 3), torch.full([n], s)
    latents = pack(initial_noise(range(seed, seed + n), (channels, size, size)))
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        velocity = transformer(latents, tokens, pooled, t.expand(n) / 1000, ids, txt_ids, guidance).sample
        latents = scheduler.step(velocity, t, latents).prev_sample
    return FluxPipeline._unpack_latents(latents, size, size, 1).clamp(-1, 1)


def interleaved(fns: dict, repeats: int = 5) -> dict:
    """Median wall time of each fn, run in turn (a, b, c, a, b, c, ...) so that drifts in machine load hit all alike."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def network_share(model, fn):
    """Fraction of fn()'s wall time spent inside the network's forward."""
    inside, started = [0.0], [0.0]
    pre = model.register_forward_pre_hook(lambda *a: started.__setitem__(0, time.perf_counter()))
    post = model.register_forward_hook(lambda *a: inside.__setitem__(0, inside[0] + time.perf_counter() - started[0]))
    try:
        start = time.perf_counter()
        fn()
        total = time.perf_counter() - start
    finally:
        pre.remove()
        post.remove()
    return inside[0] / total


def plain_training(teacher, config: TrainConfig, data, steps: int, autocast: bool = False):
    """A plain fp32 PyTorch + diffusers training loop: the teacher's network, a fresh start, the same batch and
    dropout."""
    torch.manual_seed(config.seed)
    conditioning = teacher.conditioning
    model = make_teacher_network(config.resolved(), data, conditioning)
    generator = torch.Generator().manual_seed(config.seed)
    process = make_process(config.resolved())
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(data), (config.batch_size,))
        x_0, cond = data.images[index], conditioning.draw(data.labels[index], generator, config.p_uncond)
        eps = torch.randn_like(x_0)
        t = process.draw_t(len(x_0), generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            pred = model(process.add_noise(x_0, eps, t), t, cond)
        loss = F.mse_loss(pred.float(), process.target(x_0, eps, t))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


RECIPE_KEYS = (
    "data batch_size lr p_uncond objective arch prediction shift block_out_channels layers_per_block attention "
    "scale_shift num_layers num_single_layers attention_head_dim num_attention_heads text_tokens"
)


def training_speed(teacher, train_steps: int) -> tuple:
    """(config, median seconds of ours / plain fp32 / plain bf16, bf16 steps), interleaved on the teacher's recipe."""
    recipe = teacher.meta.training
    data = load_dataset(recipe["data"], "train", image_size=recipe.get("image_size"))
    keys = (*RECIPE_KEYS.split(), "conditioning", "image_size")
    config = TrainConfig(steps=train_steps, **{k: recipe[k] for k in keys if k in recipe})
    bf16_steps = max(3, train_steps // 10)
    fns = {
        "ours": lambda: train_teacher(config, RunOptions(quiet=True), data),
        "plain": lambda: plain_training(teacher, config, data, train_steps),
        "bf16": lambda: plain_training(teacher, config, data, bf16_steps, autocast=True),
    }
    return config, interleaved(fns, repeats=3), bf16_steps


def speed(teacher, student, steps: int, n: int, train_steps: int) -> dict:
    labels = torch.arange(teacher.num_classes).repeat(n // teacher.num_classes)
    cond = teacher.conditioning.encode(labels=labels)
    process = teacher.process
    s = 4.0
    ours = lambda: generate(teacher.model, process, cond, s=s, steps=steps, batch_size=len(labels))  # noqa: E731
    plain = lambda: plain_cfg_loop(teacher.model, process, cond, s, steps)  # noqa: E731
    one_pass = lambda: generate(student.model, process, cond, s=s, steps=steps, batch_size=len(labels))  # noqa: E731
    x_ours, x_plain, x_student = ours(), plain(), one_pass()  # also the warm-up
    fns = {"ours": ours, "plain": plain, "student": one_pass}
    stock = {}
    if isinstance(student.model, FluxDenoiser):
        loaded = stock_flux(student.path)
        fns["stock"] = lambda: stock_flux_loop(loaded, cond, s, steps)
        stock = {"stock_flux_student_max_abs_difference": float((fns["stock"]() - x_student).abs().max())}
    t = interleaved(fns)
    if stock:
        stock["student_over_stock_flux_time"] = t["student"] / t["stock"]

    config, t_train, bf16_steps = training_speed(teacher, train_steps)
    return {
        "s": s,
        "n": len(labels),
        "steps": steps,
        "student_over_teacher_samples_per_s": t["ours"] / t["student"],
        "ours_over_plain_diffusers_time": t["ours"] / t["plain"],
        "ours_vs_plain_max_abs_difference": float((x_ours - x_plain).abs().max()),
        **stock,
        "sampler_efficiency_teacher": network_share(teacher.model, ours),
        "sampler_efficiency_student": network_share(student.model, one_pass),
        "train_steps": train_steps,
        "batch_size": config.batch_size,
        "train_steps_per_s_ours": train_steps / t_train["ours"],
        "train_steps_per_s_plain_fp32": train_steps / t_train["plain"],
        "train_ours_over_plain": t_train["plain"] / t_train["ours"],
        "train_steps_per_s_plain_bf16_autocast": bf16_steps / t_train["bf16"],
    }


def main():
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("demo-out"), help="folder with teacher/ and student/")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--n", type=argparse_type(POSITIVE), default=360)
    parser.add_argument("--steps", type=argparse_type(POSITIVE), default=25)
    parser.add_argument("--train-steps", type=argparse_type(POSITIVE), default=60)
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="only the speed table, written to OUT/speed.json (quality: `cfgdistill evaluate`)",
    )
    args = parser.parse_args()
    try:
        teacher, student = load(args.models / "teacher"), load(args.models / "student")
    except UserError as error:
        parser.exit(1, f"run.py: error: {error}\n")
    timing = speed(teacher, student, args.steps, 200, args.train_steps)
    machine = machine_record()
    if args.speed_only:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "speed.json").write_text(json.dumps({**timing, "machine": machine}, indent=2) + "\n")
        print("\n".join(speed_lines(timing)))
        return
    evaluation = evaluate(teacher, student, EvaluateConfig(steps=args.steps, n=args.n))
    evaluation.report["speed"], evaluation.report["machine"] = timing, machine
    write_report(evaluation, args.out)
    print((args.out / "report.md").read_text())
    print(json.dumps(timing, indent=2))


if __name__ == "__main__":
    main()
