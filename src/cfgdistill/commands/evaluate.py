"""`evaluate`: teacher and student side by side at every s, at the same noise, labels and sampler."""

from pathlib import Path

import torch

from ..checkpoint import Checkpoint
from ..config import EvaluateConfig
from ..errors import UserError
from ..evaluation.markdown import write_report
from ..evaluation.pipelines import COLUMNS, evaluate_pipelines, write_pipeline_report
from ..evaluation.report import Evaluation
from ..evaluation.report import evaluate as evaluate_pair
from ..io import WRITE_ERRORS, check_output_dir, why
from ..pretrained import is_pipeline
from .inputs import guarded
from .sample import as_checkpoint


@guarded
def evaluate(teacher, student, config: EvaluateConfig | None = None) -> Evaluation:
    """Teacher and student side by side at every s of `config.guidance`; with `config.out`, the report files.

    A student pipeline folder is judged against its teacher pipeline in their stock classes
    (evaluation/pipelines.py)."""
    config = (config or EvaluateConfig()).validate()
    if config.out is not None:
        check_output_dir(config.out, config.overwrite)
    if not isinstance(student, Checkpoint) and is_pipeline(student):
        return evaluate_pipeline_pair(teacher, student, config)
    teacher, student = as_checkpoint(teacher), as_checkpoint(student)
    if teacher.kind != "teacher" or student.kind != "student":
        raise UserError(f"--teacher must hold a teacher and --student a student; got {teacher.kind} and {student.kind}")
    if teacher.meta.data.name != student.meta.data.name:
        raise UserError("teacher and student were trained on different datasets")
    if teacher.meta.process != student.meta.process:
        raise UserError(
            f"teacher and student use different forward processes ({teacher.meta.process} and {student.meta.process})"
        )
    evaluation = evaluate_pair(teacher, student, config)
    if config.out is not None:
        try:
            write_report(evaluation, config.out)
        except WRITE_ERRORS as error:
            raise UserError(f"cannot write the report to {config.out}: {why(error)}") from None
    return evaluation


def evaluate_pipeline_pair(teacher, student, config: EvaluateConfig) -> Evaluation:
    if isinstance(teacher, Checkpoint) or (Path(teacher).is_dir() and not is_pipeline(teacher)):
        raise UserError("--student is a pipeline folder, so --teacher must be the pipeline it was distilled from")
    report, images = evaluate_pipelines(teacher, student, config)
    if config.out is not None:
        try:
            write_pipeline_report(report, images, config.out)
        except WRITE_ERRORS as error:
            raise UserError(f"cannot write the report to {config.out}: {why(error)}") from None
    grids = {name: torch.stack([x[name][:COLUMNS] for x in images.values()]) for name in ("teacher", "student")}
    return Evaluation(report, grids)
