"""The commands, each a function of its settings (config/): train.py trains a teacher, distill.py a student
(distill_pretrained.py from a diffusers pipeline), sample.py draws images, evaluate.py judges a pair,
progressive.py makes few-step students, demo.py runs the digits end to end.
"""
