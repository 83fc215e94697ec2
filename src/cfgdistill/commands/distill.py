"""`distill`: a one-pass student of a teacher's guided prediction (stage 1 of Meng et al., CVPR 2023).

One path for every kind of teacher: a cfgdistill checkpoint (checkpoint_teacher.py) or a diffusers pipeline
(pipeline_teacher.py), each of which checks the settings it can serve, opens a `Session` (the networks, the
process, the rows) and exports its student.
"""

from pathlib import Path

from ..checkpoint import Checkpoint
from ..config import DistillConfig, PipelineOptions, RunOptions
from ..data import ImageDataset
from ..guidance import distillable_rule, parse_options
from ..objectives import GuidanceDistillation
from ..pretrained import is_pipeline
from ..training.loop import fit
from ..training.run_folder import RunFolder
from .checkpoint_teacher import CheckpointTeacher
from .inputs import guarded
from .pipeline_teacher import PipelineTeacher


def teacher_of(teacher, pipeline: PipelineOptions, dataset):
    """The teacher `distill` was given: a pipeline where it is one (or where prompts are given), else a checkpoint."""
    if not isinstance(teacher, Checkpoint) and (pipeline.prompts is not None or is_pipeline(teacher)):
        return PipelineTeacher(teacher, pipeline, dataset)
    return CheckpointTeacher(teacher, pipeline, dataset)


@guarded
def distill(
    teacher: Checkpoint | str | Path,
    config: DistillConfig,
    run: RunOptions | None = None,
    dataset: ImageDataset | None = None,
    pipeline: PipelineOptions | None = None,
):
    """Train a student, initialised from the teacher, on the teacher's output under the rule `config.guider`.

    `dataset` (or `config.data`) gives the images x_t is noised from; by default the teacher's own. A diffusers
    pipeline as the teacher is distilled on `pipeline.prompts` instead. With `run.out`, checkpoints and logs go
    there and the student is saved there at the end.
    """
    config.validate()
    source = teacher_of(teacher, pipeline or PipelineOptions(), dataset)
    rule = distillable_rule(config.guider, parse_options(config.guider_option))
    config = source.check(config, rule)
    run = run or RunOptions()
    with RunFolder(run) as folder:
        session = source.open(config, run, rule)
        objective = GuidanceDistillation(
            session.pair, session.process, session.conditioning, config, rule, session.data
        )
        fit(session.student, objective, session.data, config, run, session.identity, session.preview)
        result = source.export(session, config, rule)
        folder.save(result)
    return result
