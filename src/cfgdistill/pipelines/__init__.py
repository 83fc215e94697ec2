"""Pipelines: the library's entry points, each a function of a config dataclass (config.py).

train.py trains a teacher, distill.py a student, sample.py draws images, demo.py runs all on the digits.
"""
