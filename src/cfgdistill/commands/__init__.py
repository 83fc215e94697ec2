"""The commands, each a function of its settings (config/): train.py trains a teacher, distill.py a student
(one path; its teacher a checkpoint, checkpoint_teacher.py, or a diffusers pipeline, pipeline_teacher.py),
sample.py draws images, evaluate.py judges a pair, progressive.py makes few-step students, demo.py runs the
digits end to end; inputs.py keeps what each reads apart from what it writes.
"""
