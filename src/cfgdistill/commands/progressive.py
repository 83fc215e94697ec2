"""`progressive`: few-step guided students, stage 2 of Meng et al. (CVPR 2023), s still an input.

Round r trains a student that lands in one step where the previous round's student lands in two, so each
round halves the sampling steps (objectives/progressive.py). Every round's student is kept in
`out/rounds/steps-N/`, each a run folder of its own (checkpoints, logs); the last is also saved in `out`.
A student records its grid (`sampling.grid` in cfgdistill.json), which `sample` and `evaluate` use.
"""

import copy
import json
from dataclasses import asdict
from pathlib import Path

from ..checkpoint import META_FILE, Checkpoint, load
from ..config import ProgressiveConfig, RunOptions
from ..data import load_dataset
from ..errors import UserError
from ..objectives.progressive import ProgressiveDistillation
from ..training.loop import fit
from ..training.precision import AUTO
from ..training.run_folder import RunFolder
from ..training.state import scan
from .checkpoint_teacher import fingerprint
from .inputs import guarded

DEFAULT_START = 64


def start_grid(student: Checkpoint, config: ProgressiveConfig) -> list:
    """Round 0's grid: the student's recorded one, or the process's deterministic grid of `start_steps`."""
    recorded = student.grid
    if recorded and config.start_steps not in (None, len(recorded)):
        raise UserError(
            f"this student samples on its recorded {len(recorded)}-step grid; --start-steps "
            f"{config.start_steps} would start from another"
        )
    grid = recorded or student.process.grid(config.start_steps or DEFAULT_START)
    if len(grid) % 2**config.rounds:
        raise UserError(
            f"{config.rounds} rounds need a step count divisible by 2^{config.rounds}; "
            f"the student starts from {len(grid)} steps"
        )
    return [float(t) for t in grid]


def check_student(student: Checkpoint, run: RunOptions):
    if student.kind != "student" or student.model.config.guidance_range is None:
        raise UserError(
            "progressive distillation starts from a guidance-distilled student (cfgdistill distill), "
            "but this checkpoint is a teacher"
        )
    if student.process.name == "vp" and student.process.prediction_type != "v_prediction":
        raise UserError(
            "progressive distillation needs a v-prediction or flow model: x_0 from eps diverges at "
            "high noise in one step (train the teacher with --prediction v_prediction)"
        )
    if run.resume not in (None, "latest"):
        raise UserError("progressive runs resume with --resume latest: each round keeps its own checkpoints")


def round_options(run: RunOptions, steps: int) -> RunOptions:
    """The round's own run folder; it resumes where it has checkpoints and the run resumes, else starts over."""
    if run.out is None:
        return run
    out = Path(run.out) / "rounds" / f"steps-{steps}"
    resume = "latest" if run.resume and scan(out)[0] else None
    return RunOptions(**{**vars(run), "out": out, "resume": resume, "overwrite": resume is None})


def finished_round(options: RunOptions, run: RunOptions, grid: list, config) -> Checkpoint | None:
    """A round that a resumed run already finished: its student, which must sample on this round's grid."""
    if run.resume is None or options.out is None or not (Path(options.out) / META_FILE).is_file():
        return None
    done = load(options.out)
    settings = {k: v for k, v in done.meta.training.get("progressive", {}).items() if k != "round"}
    if config.mixed_precision == AUTO:  # a resume keeps the precision the run chose
        config.mixed_precision = settings.get("mixed_precision", AUTO)
    if done.grid != grid or settings != json.loads(json.dumps(asdict(config))):
        raise UserError(f"{options.out} was trained with other round settings: resume with the run's own")
    return done


def run_round(teacher: Checkpoint, grid: list, config, run: RunOptions, dataset, index: int, stage1) -> Checkpoint:
    """One round: a copy of `teacher` learns to land in one step on `grid[::2]` where `teacher` lands in two."""
    half = grid[::2]
    options = round_options(run, len(half))
    done = finished_round(options, run, half, config)
    if done is not None:
        return done
    frozen = teacher.model.eval().requires_grad_(False)
    student = copy.deepcopy(frozen).requires_grad_(True)
    trained = tuple(teacher.model.config.guidance_range)
    objective = ProgressiveDistillation(frozen, teacher.process, teacher.conditioning, config, grid, trained)
    identity = {"teacher": fingerprint(frozen), "grid": grid, "data_images": len(dataset)}
    with RunFolder(options) as folder:
        fit(student, objective, dataset, config, options, identity)
        training = {"teacher": teacher.meta.training, "progressive": asdict(config) | {"round": index}}
        training["stage1"] = stage1  # the guidance-distilled student the rounds started from
        result = Checkpoint.create(
            student.cpu(),
            teacher.process,
            kind="student",
            dataset=dataset,
            training=training,
            conditioning=teacher.conditioning,
            rule=teacher.meta.guidance.rule,
            options=teacher.meta.guidance.options,
        )
        result.meta.sampling = {"grid": half}
        folder.save(result)
    return result


@guarded
def progressive(student, config: ProgressiveConfig, run: RunOptions | None = None) -> Checkpoint:
    """`config.rounds` rounds from a guidance-distilled student; returns the last round's student."""
    config.validate()
    run = run or RunOptions()
    student = student if isinstance(student, Checkpoint) else load(student)
    check_student(student, run)
    grid = start_grid(student, config)
    stage1 = student.meta.training.get("stage1") or (str(Path(student.path).resolve()) if student.path else None)
    with RunFolder(run) as folder:
        data = student.meta.data
        dataset = load_dataset(data.name, "train", image_shape=tuple(data.image_shape))
        for index in range(config.rounds):
            student = run_round(student, grid, config, run, dataset, index, stage1)
            grid = grid[::2]
        folder.save(student)
    return student
