"""The layering of the packages: every module imports on its own, the imports between subbit's
modules (function-local ones included) form no cycle, the golden model stays free of Amaranth and
torch, and no library imports the command line (`subbit.cli`)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Installed package -> folder (pyproject.toml's package-dir).
PACKAGES = {"subbit": "subbit", "subbit.hw": "hw", "subbit.model": "model", "subbit.sim": "sim",
            "subbit.fpga": "fpga"}
#: Not imported by subbit: run by NNCodec's own virtual environment.
FOREIGN = {"subbit._nncodec_runner"}
#: Run the program when imported.
MAINS = {"subbit.__main__", "subbit.cli.__main__"}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if pkg == "subbit" and parts and parts[0] in {p.split(".")[1] for p in PACKAGES if "." in p}:
                continue
            mods[".".join([pkg] + parts)] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """subbit's modules that ``name`` imports anywhere in its source (function-local imports too)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = name if is_pkg else name.rpartition(".")[0]
            if node.level:
                base = ".".join(base.split(".")[:len(base.split(".")) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t not in MODULES and "." in t:
                t = t.rpartition(".")[0]
            # a module always imports its parent packages first: not an edge of the layering
            if t in MODULES and t != name and not name.startswith(t + "."):
                out.add(t)
    return out


def test_the_module_list_is_complete():
    assert {"subbit.cli", "subbit.cli.codec", "subbit.hw.params", "subbit.model.stream", "subbit.sim.tb",
            "subbit.fpga.flow", "subbit.model.train.api"} <= set(MODULES)


def test_no_import_cycles():
    graph = {m: _imports(m, p) for m, p in MODULES.items()}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):                                       # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                cycles.append(sorted(comp))
    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_libraries_never_import_the_command_line():
    users = {m for m, p in MODULES.items() if not m.startswith("subbit.cli")
             and any(t == "subbit.cli" or t.startswith("subbit.cli.") for t in _imports(m, p))}
    assert users == {"subbit.__main__"}


def test_the_golden_model_never_imports_amaranth_or_the_hardware():
    banned = ("amaranth", "cocotb", "subbit.hw", "subbit.sim", "subbit.fpga", "subbit.cli")
    found = {}
    for m, path in MODULES.items():
        if not m.startswith("subbit.model"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if isinstance(node, ast.ImportFrom) and node.level and node.level > (2 if ".train." in m else 1):
                names = [f"subbit.{node.module}"]            # from ..hw import ...: out of the model
            found.update({f"{m}: {n}": 1 for n in names if n.split(".")[0] in banned or n.startswith(banned)})
    assert not found


def _run(code: str, **env) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env=dict(os.environ, **env))
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_golden_coder_runs_without_torch_amaranth_or_numba():
    out = _run("import sys\n"
               "import numpy as np\n"
               "from subbit.model import stream\n"
               "c = stream.StreamConfig()\n"
               "q = np.random.default_rng(0).integers(-3, 4, 5000)\n"
               "assert (stream.decode_codes(stream.encode_codes(q, c), c) == q).all()\n"
               "print(sorted(m for m in ('torch', 'amaranth', 'numba', 'cocotb') if m in sys.modules))",
               SUBBIT_GOLDEN="1")
    assert out.strip() == "[]"


def test_the_hardware_parameters_import_without_amaranth():
    out = _run("import sys\n"
               "from subbit.hw.params import DecoderParams\n"
               "DecoderParams(lanes=4)\n"
               "print('amaranth' in sys.modules)\n"
               "from subbit.hw.params import ErrorCode\n"
               "print(ErrorCode.PAYLOAD_CHECK.value, 'amaranth' in sys.modules)")
    assert out.split() == ["False", "11", "True"]


@pytest.mark.parametrize("chunk", range(4))
def test_every_module_imports_on_its_own(chunk):
    """Each module in a fresh interpreter state of subbit: its own imports suffice, in any order
    (third-party packages stay loaded between modules; subbit's are dropped)."""
    names = [m for m in sorted(MODULES) if m not in FOREIGN | MAINS][chunk::4]
    out = _run("import importlib, sys, traceback\n"
               f"for name in {names!r}:\n"
               "    for m in [m for m in sys.modules if m == 'subbit' or m.startswith('subbit.')]:\n"
               "        del sys.modules[m]\n"
               "    try:\n"
               "        importlib.import_module(name)\n"
               "    except Exception:\n"
               "        print(name, traceback.format_exc().splitlines()[-1])\n")
    assert out == ""


def test_only_the_command_line_parses_arguments():
    """argparse and parser building (``add_parser``, ``add_argument``) live in `subbit.cli` alone: a
    new command or option goes there, its work into a library function."""
    found = []
    for m, path in MODULES.items():
        if m.startswith("subbit.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names) or \
                    isinstance(node, ast.ImportFrom) and node.module == "argparse" or \
                    isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("add_parser", "add_argument", "add_subparsers", "add_argument_group"):
                found.append(f"{m}:{node.lineno}")
    assert found == []
