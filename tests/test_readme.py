"""The README's first tour block is real code: it must run as written."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_the_tour_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    namespace: dict = {}
    exec(compile(blocks[0], "README tour", "exec"), namespace)
    assert namespace["f_lin"].graph is not None


def test_quick_start_has_exactly_two_commands():
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert [c.strip() for c in commands] == [
        "pip install . && chainrule demo",
        'pip install -e ".[test]" && python -m pytest -q']
    assert commands[1].strip() in (README.parent / ".ci" / "run").read_text()
