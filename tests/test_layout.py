"""The code stays small enough to read: no file over 300 lines, no function over 50."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
SOURCES = sorted([*ROOT.glob("src/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("tests/*.py")])


def test_no_file_over_300_lines_and_no_function_over_50():
    assert SOURCES, "no sources found"
    too_long = []
    for path in SOURCES:
        text = path.read_text()
        if len(text.splitlines()) > 300:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}()")
    assert not too_long, too_long


def test_importing_the_package_is_light_and_leaves_the_environment_alone():
    import subprocess
    import sys

    code = (
        "import os, sys; before = dict(os.environ); import cfgdistill; "
        "assert dict(os.environ) == before, 'the environment changed'; "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        "assert callable(cfgdistill.sample)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
