"""Examples in the documentation are executed."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(path):
    with open(os.path.join(ROOT, path)) as fh:
        text = fh.read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.parametrize("path", ["README.md"])
def test_python_examples_run(path, tmp_path, monkeypatch):
    blocks = python_blocks(path)
    assert blocks, f"no python example in {path}"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, path, "exec"), {})


def test_readme_starts_with_the_two_commands():
    with open(os.path.join(ROOT, "README.md")) as fh:
        text = fh.read()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    assert [ln.split("#")[0].strip() for ln in first_block.strip().splitlines()] == ["make demo", "make test"]
    with open(os.path.join(ROOT, ".ci", "run")) as fh:
        assert "make test" in fh.read()
