"""The code stays small enough to read (no file over 300 lines, no function over 50), its families layered,
its results indexed and its recipes documented."""

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


# Each family imports only from families below it (errors lowest, the commands and their entry points highest)
LAYERS = [
    {"errors"},
    {"io"},
    {"config"},
    {"schema", "data", "images"},
    {"conditioning", "processes", "networks"},
    {"checkpoint"},
    {"guidance"},
    {"objectives"},
    {"training"},
    {"pretrained"},
    {"evaluation"},
    {"commands"},
    {"api", "cli", "__init__", "__main__"},
]


def family_imports() -> list:
    """(importing module, its family, imported family) for every relative import across families in src/."""
    src, found = ROOT / "src" / "cfgdistill", []
    for path in src.rglob("*.py"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        here = (parts[:-1] if parts[-1] == "__init__" else parts)[:1] or ["__init__"]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                targets = [base + node.module.split(".")] if node.module else [base + [a.name] for a in node.names]
                found += [(str(path.relative_to(src)), here[0], t[0]) for t in targets if t and t[0] != here[0]]
    return found


def test_no_family_imports_from_a_family_above_its_own():
    level = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    edges = family_imports()
    assert edges and {f for _, f, _ in edges} <= set(level), {f for _, f, _ in edges} - set(level)
    upward = [f"{module} imports {target}" for module, mine, target in edges if level[target] > level[mine]]
    assert not upward, upward


def test_every_results_folder_and_file_is_in_the_generated_index():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "benchmarks/results_index.py", "--check"], cwd=ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def test_the_recipes_page_lists_every_recipe_with_its_note_and_settings():
    from cfgdistill import RECIPES

    page = (ROOT / "docs" / "recipes.md").read_text().splitlines()
    for name, recipe in RECIPES.items():
        row = next((line for line in page if line.startswith(f"| `{name}` |")), "")
        assert recipe.note in row, name
        for command, values in recipe.settings.items():
            assert all(f"`{key}={value}`" in row for key, value in values.items()), (name, command)


def test_every_relative_link_in_the_readme_and_docs_resolves():
    import re

    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#")[0]
            if path and "://" not in path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
