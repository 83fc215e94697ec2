"""What a command reads and writes, found from its arguments by the roles its settings declare, and kept apart.

Every command is `@guarded`: before any work its outputs are checked against every input it reads, so what a
user brings (a teacher, a pipeline, data, prompts, a guide model) is never written to, `--overwrite` or not.
"""

import functools
import inspect
from dataclasses import fields
from pathlib import Path

from ..config.kinds import Settings, flag_of
from ..io import check_apart

READ_ARGUMENTS = ("teacher", "student", "model")  # the API's model arguments: a path, or a loaded checkpoint


def paths_of(arguments: dict) -> tuple:
    """({flag: path} written, {flag: path} read) by a command called with `arguments`."""
    outputs, inputs = {}, {}
    for name, value in arguments.items():
        if isinstance(value, Settings):
            for item in fields(value):
                role, path = item.metadata.get("role"), getattr(value, item.name)
                if role is not None and path is not None:
                    (outputs if role == "output" else inputs)[flag_of(item).lstrip("-")] = path
        elif name in READ_ARGUMENTS:
            path = getattr(value, "path", value)  # a loaded checkpoint keeps the folder it came from
            if isinstance(path, (str, Path)):
                inputs[name] = path
    return outputs, inputs


def guarded(command):
    signature = inspect.signature(command)

    @functools.wraps(command)
    def run(*args, **kwargs):
        check_apart(*paths_of(signature.bind(*args, **kwargs).arguments))
        return command(*args, **kwargs)

    return run
