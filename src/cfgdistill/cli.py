"""The `cfgdistill` command: train, distill, sample, demo."""

import argparse
import math
import sys
import warnings
from pathlib import Path

from .errors import UserError

SAMPLER_NAMES = ("ddim", "dpm++", "euler")
# Named defaults for `train` and `distill`; flags given on the command line still win.
PRESETS = {
    "fashion-cpu": {  # a text-conditioned Fashion-MNIST teacher and student within an hour on 2 CPU cores
        "train": {"data": "fashion-mnist", "steps": 4000, "batch_size": 48, "block_out_channels": [16, 32, 64], "scale_shift": True},
        # s = 1 inside the range, half of each batch on the teacher's guided paths, rows weighted by t and s: see README
        "distill": {"steps": 800, "batch_size": 48, "lr": 5e-4, "guidance_min": 0.0, "trajectory_fraction": 0.5,
                    "loss_space": "guidance"},
    },
}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def label_list(text: str) -> list:
    return [item.strip() for item in text.split(",") if item.strip()]


def resolve_labels(items: list, class_names: list) -> list:
    """Class names or indices to indices; a name wins where it is also a number (digits' "3")."""
    labels = []
    for item in items:
        if item in class_names:
            labels.append(class_names.index(item))
        elif item.lstrip("-").isdigit():
            labels.append(int(item))
        else:
            raise UserError(f"unknown class {item!r}; the classes are: {', '.join(class_names)}")
    return labels


def channel_list(text: str) -> list:
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be whole numbers separated by commas, got {text!r}") from None
    if not values or any(v <= 0 or v % 4 for v in values):
        raise argparse.ArgumentTypeError(f"widths must be positive multiples of 4, got {text!r}")
    return values


def guidance_list(text: str) -> list:
    return [finite_float(item) for item in text.split(",") if item.strip()]


def count(text: str) -> int:
    """A whole number >= 0, where 0 turns the feature off."""
    value = positive_int(text) if text.strip() not in ("0", "+0") else 0
    return value


def add_loop_flags(parser, steps: int):
    """The flags of the shared training loop (teacher training and distillation)."""
    parser.add_argument("--steps", type=positive_int, default=steps, help="optimizer steps")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per process and micro-batch")
    parser.add_argument("--gradient-accumulation-steps", type=positive_int, default=1,
                        help="micro-batches per optimizer step; global batch = batch size x processes x this")
    parser.add_argument("--lr", type=finite_float, default=1e-3)
    parser.add_argument("--p-uncond", type=finite_float, default=0.1, help="probability of dropping the label to the null class")
    parser.add_argument("--ema-decay", type=finite_float, default=0.999)
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=count, default=500, help="steps between resumable checkpoints (0: never)")
    parser.add_argument("--checkpoints-total-limit", type=positive_int, default=None, help="keep only the newest K checkpoints")
    parser.add_argument("--resume", metavar="latest|PATH", help="continue from the newest complete checkpoint, or from PATH")
    parser.add_argument("--log-every", type=positive_int, default=50, help="steps between TensorBoard scalars")
    parser.add_argument("--validate-every", type=count, default=500, help="steps between preview grids in TensorBoard (0: never)")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU is present")


def build_parser(preset: str | None = None) -> Parser:
    parser = Parser(prog="cfgdistill", description="Classifier-free guidance and guidance distillation for diffusion models.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser("train", help="train a class-conditional teacher with condition dropout")
    train.add_argument("--data", default="digits",
                       help="digits (bundled with scikit-learn), fashion-mnist (Debian package), or a folder with one sub-folder per class")
    train.add_argument("--conditioning", choices=("class", "text"),
                       help="class labels, or text prompts through all-MiniLM-L6-v2 (default: class for digits, text otherwise)")
    train.add_argument("--image-size", type=positive_int,
                       help="side in pixels that an image folder's images are centre-cropped and resized to (default 32)")
    train.add_argument("--block-out-channels", type=channel_list, default=[32, 64], help="UNet widths per level, e.g. 16,32,64")
    train.add_argument("--scale-shift", action=argparse.BooleanOptionalAction, default=False,
                       help="timestep, condition and s embeddings scale and shift each ResNet block's features (ADM), not only shift them")
    train.add_argument("--out", required=True, type=Path, help="run folder: the model, checkpoints/ and logs/")
    add_loop_flags(train, steps=2000)
    train.add_argument("--prediction", choices=("epsilon", "v_prediction"), default="v_prediction")

    distill = commands.add_parser("distill", help="distill a teacher's CFG into a one-pass student that takes s")
    distill.add_argument("--teacher", required=True, type=Path, help="teacher checkpoint folder")
    distill.add_argument("--data", help="training images (default: the teacher's dataset)")
    distill.add_argument("--out", required=True, type=Path, help="run folder: the student, checkpoints/ and logs/")
    add_loop_flags(distill, steps=1500)
    distill.add_argument("--guidance-min", type=finite_float, default=1.0, help="smallest s drawn in training")
    distill.add_argument("--guidance-max", type=finite_float, default=6.0, help="largest s drawn in training")
    distill.add_argument("--trajectory-fraction", type=finite_float, default=0.0,
                         help="share of each batch on the teacher's own guided DDIM paths instead of noised data (0 to 1)")
    distill.add_argument("--trajectory-steps", type=positive_int, default=20, help="DDIM steps of those paths")
    distill.add_argument("--s-draws", type=positive_int, default=1,
                         help="guidance scales each image (or path state) is learnt at, evenly spaced over the range; "
                              "one teacher pass serves them all, so the student sees batch-size × this many rows")
    distill.add_argument("--loss-space", choices=("prediction", "eps", "guidance"), default="prediction",
                         help="match the teacher in the model's own output (v or eps), in the eps it implies, "
                              "or weighted by the guidance correction each row asks for, |s - 1| times the "
                              "teacher's RMS cond - uncond at t, plus a floor")

    for name, sub in (("train", train), ("distill", distill)):
        sub.add_argument("--preset", choices=sorted(PRESETS), help="named defaults: " + "; ".join(
            f"{key}: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in values[name].items()) for key, values in PRESETS.items()))
        if preset is not None:
            sub.set_defaults(**PRESETS[preset][name])

    sample = commands.add_parser("sample", help="sample a teacher (CFG, two passes) or a student (one pass)")
    sample.add_argument("--model", required=True, type=Path, help="teacher or student checkpoint folder")
    sample.add_argument("--out", required=True, type=Path, help="PNG grid to write")
    sample.add_argument("--guidance", "-s", type=finite_float, default=3.0, help="s: 0 unconditional, 1 conditional, >1 guided")
    sample.add_argument("--steps", type=positive_int, default=25)
    sample.add_argument("--sampler", choices=SAMPLER_NAMES, default="ddim")
    sample.add_argument("--labels", type=label_list, help="comma-separated class indices or names, repeated to fill --n")
    sample.add_argument("--prompt", action="append", help="a text prompt (text models); repeat for several columns")
    sample.add_argument("--negative-prompt", help="the teacher's negative branch: pred = neg + s*(pos - neg) (text teachers)")
    sample.add_argument("--n", type=positive_int, help="number of images (default: one per label, or 10 per class)")
    sample.add_argument("--seed", type=int, default=0, help="image i starts from noise seeded with seed + i")
    sample.add_argument("--batch-size", type=positive_int, default=256)
    sample.add_argument("--out-array", type=Path, help="also save the samples as float32 N×C×H×W in [-1, 1] (.npy)")

    demo = commands.add_parser("demo", help="train, distill and compare on the bundled digits")
    demo.add_argument("--out", required=True, type=Path)
    demo.add_argument("--train-steps", type=positive_int, default=None)
    demo.add_argument("--distill-steps", type=positive_int, default=None)
    demo.add_argument("--sample-steps", type=positive_int, default=25)
    demo.add_argument("--n", type=positive_int, default=200, help="samples per guidance scale for the summary")

    evaluate = commands.add_parser("evaluate", help="quality against s for teacher and student, side by side")
    evaluate.add_argument("--teacher", required=True, type=Path)
    evaluate.add_argument("--student", required=True, type=Path)
    evaluate.add_argument("--guidance", type=guidance_list, default=None, help="comma-separated s values (default: 0,1,1.5,2,3,4,6,8)")
    evaluate.add_argument("--steps", type=positive_int, default=25)
    evaluate.add_argument("--n", type=positive_int, default=360, help="samples per s and model (at most the held-out size)")
    evaluate.add_argument("--sampler", choices=SAMPLER_NAMES, default="ddim")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", required=True, type=Path, help="folder for report.json, report.md, plots and grids")

    for sub in (train, distill, demo, evaluate):
        sub.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder (and a run's checkpoints)")
    for sub in (train, distill, sample, demo, evaluate):
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def loop_settings(args, config_class, **fields):
    """The config and run options that `train` and `distill` share, from their flags."""
    from .loop import RunOptions

    config = config_class(
        steps=args.steps, batch_size=args.batch_size, gradient_accumulation_steps=args.gradient_accumulation_steps,
        lr=args.lr, p_uncond=args.p_uncond, ema_decay=args.ema_decay, mixed_precision=args.mixed_precision,
        seed=args.seed, **fields,
    )
    config.validate()
    run = RunOptions(
        out=args.out, checkpoint_every=args.checkpoint_every, checkpoints_total_limit=args.checkpoints_total_limit,
        resume=args.resume, log_every=args.log_every, validate_every=args.validate_every, progress=not args.quiet,
        cpu=args.cpu, overwrite=args.overwrite,
    )
    return config, run


def prepare_run_folder(args):
    """A run folder is fresh, resumed (--resume) or replaced (--overwrite); anything else is refused untouched.
    An overwritten run's old checkpoints and logs are cleared by the loop, once the new run has passed its checks."""
    from .checkpoint import check_output_dir
    from .training_state import checkpoint_root

    if args.resume is not None:
        check_output_dir(args.out, overwrite=True)
        if args.resume != "latest" and not Path(args.resume).is_dir():
            raise UserError(f"--resume {args.resume}: no such checkpoint folder (use 'latest' or a checkpoints/step-N folder)")
        return
    if checkpoint_root(args.out).is_dir() and not args.overwrite:
        raise UserError(f"{args.out} holds a training run; pass --resume latest to continue it or --overwrite to start over")
    check_output_dir(args.out, args.overwrite)


def run_train(args):
    from .train import TrainConfig, train_teacher

    config, run = loop_settings(
        args, TrainConfig, data=args.data, prediction=args.prediction, conditioning=args.conditioning,
        block_out_channels=args.block_out_channels, scale_shift=args.scale_shift, image_size=args.image_size,
    )
    prepare_run_folder(args)
    teacher = train_teacher(config, run=run)
    if is_main_process():
        print(f"teacher saved to {teacher.save(args.out, overwrite=True)}")


def run_distill(args):
    from .checkpoint import load_checkpoint
    from .distill import DistillConfig, distill

    config, run = loop_settings(args, DistillConfig, guidance_min=args.guidance_min, guidance_max=args.guidance_max,
                                trajectory_fraction=args.trajectory_fraction, trajectory_steps=args.trajectory_steps,
                                loss_space=args.loss_space, s_draws=args.s_draws)
    prepare_run_folder(args)
    teacher = load_checkpoint(args.teacher)
    dataset = None
    if args.data is not None:
        from .data import load_dataset

        dataset = load_dataset(args.data, "train", image_shape=tuple(teacher.meta["data"]["image_shape"]))
    student = distill(teacher, config, dataset, run=run)
    if is_main_process():
        print(f"student saved to {student.save(args.out, overwrite=True)}")


def is_main_process() -> bool:
    """Under `accelerate launch` or torchrun only rank 0 writes the final model."""
    import os

    return os.environ.get("RANK", "0") == "0"


def check_file_output(path: Path, suffix: str):
    if path.suffix.lower() != suffix:
        raise UserError(f"{path} should end in {suffix}")
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a folder")


def run_sample(args):
    import torch

    from .checkpoint import load_checkpoint
    from .conditioning import condition_for
    from .images import save_array, save_image, tile
    from .sampling import check_labels, sample

    check_file_output(args.out, ".png")
    if args.out_array is not None:
        check_file_output(args.out_array, ".npy")
    checkpoint = load_checkpoint(args.model)
    meta, classes = checkpoint.meta["conditioning"], checkpoint.num_classes
    if args.prompt is not None and args.labels is not None:
        raise UserError("give --prompt or --labels, not both")
    if args.negative_prompt is not None and meta["type"] != "text":
        raise UserError("--negative-prompt needs a text-conditioned model; this one takes class labels")
    if args.prompt is not None:
        prompts = args.prompt
        columns = len(prompts)
        rows = prompts * math.ceil((args.n or len(prompts)) / len(prompts))
        cond = condition_for(meta, prompts=rows[: args.n or len(prompts)])
    else:
        given = args.labels is not None
        labels = resolve_labels(args.labels, meta["class_names"]) if given else list(range(classes))
        if not labels:
            raise UserError("--labels is empty")
        check_labels(torch.tensor(labels), classes)
        columns = len(labels)
        n = args.n or (len(labels) if given else 10 * classes)
        cond = condition_for(meta, labels=torch.tensor(labels).repeat(math.ceil(n / len(labels)))[:n])
    n = len(cond)
    negative = None if args.negative_prompt is None else condition_for(meta, prompts=[args.negative_prompt] * n)
    images = sample(
        checkpoint.model, checkpoint.noise_schedule, cond, s=args.guidance, steps=args.steps, sampler=args.sampler,
        seed=args.seed, negative=negative, batch_size=args.batch_size, progress=not args.quiet,
    )
    passes = "1 pass" if checkpoint.kind == "student" else ("2 passes (batched)" if args.guidance not in (0, 1) else "1 pass")
    save_image(tile(images, ncol=min(n, columns)), args.out)
    if args.out_array is not None:
        save_array(images, args.out_array)
    print(f"{n} samples from the {checkpoint.kind} at s = {args.guidance:g}, {args.steps} steps, {passes} per step -> {args.out}")


def run_evaluate(args):
    from .checkpoint import check_output_dir, load_checkpoint
    from .evaluation.report import DEFAULT_GUIDANCE, evaluate, write_report

    check_output_dir(args.out, args.overwrite)
    teacher, student = load_checkpoint(args.teacher), load_checkpoint(args.student)
    if teacher.kind != "teacher" or student.kind != "student":
        raise UserError(f"--teacher must hold a teacher and --student a student; got {teacher.kind} and {student.kind}")
    if teacher.meta["data"]["name"] != student.meta["data"]["name"]:
        raise UserError("teacher and student were trained on different datasets")
    guidance = args.guidance if args.guidance else DEFAULT_GUIDANCE
    report = evaluate(teacher, student, guidance, args.steps, args.n, args.sampler, args.seed, progress=not args.quiet)
    write_report(report, args.out, teacher.meta["conditioning"]["class_names"])
    print((args.out / "report.md").read_text())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "preset", None):
        args = build_parser(args.preset).parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.showwarning = lambda message, category, *rest, **kw: print(f"cfgdistill: warning: {message}", file=sys.stderr)
    from .loop import Interrupted

    handlers = {"train": run_train, "distill": run_distill, "sample": run_sample, "evaluate": run_evaluate}
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(args)
        else:
            handlers[args.command](args)
    except UserError as error:
        print(f"cfgdistill: error: {error}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"cfgdistill: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("cfgdistill: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
