"""Student against teacher samples per second at several s, for any checkpoint pair (class or text conditioned).

    python benchmarks/throughput.py --models runs/fashion --guidance 2,3,5 --n 100

Both models sample the same labels from the same noise; each timing is the median of interleaved repeats,
so a slow moment on a shared machine hits both. The guided teacher runs two rows per image per step, so
the ideal ratio is about 2.
"""

import json
from pathlib import Path

import torch
from run import interleaved

from cfgdistill import UserError, load
from cfgdistill.config.flags import Parser, argparse_type
from cfgdistill.config.kinds import FLOATS, POSITIVE
from cfgdistill.guidance.sampling import generate


def throughput(teacher, student, guidance, n: int, steps: int, repeats: int) -> list:
    labels = torch.arange(teacher.num_classes).repeat(n // teacher.num_classes + 1)[:n]
    cond = teacher.conditioning.encode(labels=labels)
    rows = []
    for s in guidance:
        fns = {
            name: (lambda ckpt=ckpt: generate(ckpt.model, ckpt.process, cond, s=s, steps=steps, seed=0, batch_size=n))
            for name, ckpt in (("teacher", teacher), ("student", student))
        }
        for fn in fns.values():  # warm-up
            fn()
        seconds = interleaved(fns, repeats)
        rows.append(
            {
                "s": s,
                "teacher_samples_per_s": n / seconds["teacher"],
                "student_samples_per_s": n / seconds["student"],
                "student_over_teacher": seconds["teacher"] / seconds["student"],
            }
        )
        print(
            f"s = {s:g}: teacher {rows[-1]['teacher_samples_per_s']:.1f}/s, student "
            f"{rows[-1]['student_samples_per_s']:.1f}/s, "
            f"ratio {rows[-1]['student_over_teacher']:.2f}",
            flush=True,
        )
    return rows


def main():
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("demo-out"), help="folder with teacher/ and student/")
    parser.add_argument(
        "--guidance", type=argparse_type(FLOATS), default=(2.0, 3.0, 5.0), help="comma-separated s values"
    )
    parser.add_argument("--n", type=argparse_type(POSITIVE), default=100, help="samples per timing, one batch")
    parser.add_argument("--steps", type=argparse_type(POSITIVE), default=20)
    parser.add_argument("--repeats", type=argparse_type(POSITIVE), default=3)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    if args.out and not args.out.parent.is_dir():  # refuse now, not after minutes of timing
        parser.error(f"--out: folder {args.out.parent} does not exist")
    try:
        teacher, student = load(args.models / "teacher"), load(args.models / "student")
    except UserError as error:
        parser.exit(1, f"throughput: error: {error}\n")
    rows = throughput(teacher, student, args.guidance, args.n, args.steps, args.repeats)
    if args.out:
        result = {
            "models": str(args.models),
            "n": args.n,
            "steps": args.steps,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "rows": rows,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
