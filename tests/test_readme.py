"""The README's Python API snippet runs as written, with tiny step and sample counts."""

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"
SMALLER = {"steps=1200": "steps=2", "steps=600": "steps=2", "n=100": "n=20"}


def api_snippet() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_the_readme_api_snippet_runs(tmp_path, monkeypatch, capsys):
    code = api_snippet()
    for big, small in SMALLER.items():
        assert big in code, big
        code = code.replace(big, small)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "runs/teacher/cfgdistill.json").is_file() and (
        tmp_path / "runs/student/cfgdistill.json"
    ).is_file()
    assert (tmp_path / "grid.png").is_file() and (tmp_path / "runs/eval/report.md").is_file()
    assert 0 <= float(capsys.readouterr().out.strip().splitlines()[-1]) <= 1


def test_the_readme_pipeline_commands_run_on_a_tiny_pipeline(tmp_path, monkeypatch):
    """The three commands of "Distill your own pipeline", as written, on a tiny SD pipeline with 2 steps."""
    import shlex

    from tiny_pipelines import sd_pipeline

    from cfgdistill.cli import main

    section = README.read_text().split("## Distill your own pipeline", 1)[1]
    distill, sample, python = re.search(r"```bash\n(.*?)```", section, re.S)[1].strip().splitlines()
    monkeypatch.chdir(tmp_path)
    sd_pipeline().save_pretrained("path/to/pipeline")
    Path("prompts.txt").write_text("a red dress\na coat\n")
    assert main(shlex.split(distill)[1:] + ["--steps", "2", "--batch-size", "4", "--quiet"]) == 0
    assert main(shlex.split(sample)[1:] + ["--steps", "2", "--quiet"]) == 0
    code = shlex.split(python)[2]
    exec(compile(code.replace("guidance_scale=5", "guidance_scale=5, num_inference_steps=2"), "README", "exec"), {})
    assert Path("dress.png").is_file() and Path("d.png").is_file()
