"""The import rules (docs/architecture.md): read every module's imports with `ast` and check who may import whom.

Core packages import no UI and no HTTP client, checked a second way too: importing them in a fresh
interpreter must not load those libraries (a re-export or a plugin hook would slip past the source scan).
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import tokenflow_tui.engine
import tokenflow_tui.store

REPO = Path(__file__).resolve().parent.parent
TOP = ("tokenflow_tui", "tokenflow")

# What each package may import from the others (a module path below tokenflow_tui, or a whole package).
# Its own package is always allowed.
ALLOWED: dict[str, tuple[str, ...]] = {
    "engine": (),
    "store": ("engine",),
    "job": ("engine", "store.errors", "sim"),
    "endpoint": ("engine", "job"),
    "traffic": ("engine", "job", "endpoint.retry_policy"),
    # sim: a job with `simulate = true` runs against the simulator the runner starts for it
    "run": ("engine", "job", "store", "endpoint", "traffic", "sim"),
    "ui": ("run.contract", "run.durations", "engine"),
    "cli": ("engine", "job", "store", "endpoint", "traffic", "run", "ui", "sim", "bench", "cluster"),
    # one job across a Ray cluster: shard actors holding runners, the driver combining them
    "cluster": ("engine", "job", "store", "traffic", "run"),
    "bench": ("engine", "sim", "endpoint"),
    "sim": ("engine.clock",),
    # the top-level modules: the package's own names are the engine's; `python -m` is the command line
    "__init__": ("engine",),
    "__main__": ("cli",),
    "tokenflow": ("engine",),
}

# Libraries beyond the standard library that a package may use; a package not named here is not limited.
THIRD_PARTY: dict[str, tuple[str, ...]] = {
    "engine": (),
    "store": ("orjson", "tomli_w"),
}


@dataclass(frozen=True)
class Import:
    file: str
    line: int
    importer: str
    target: str


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(root: Path) -> list[Import]:
    """Every import statement of the packages under `root`, relative ones resolved, those inside functions too."""
    files = sorted(p for top in TOP for p in (root / top).rglob("*.py"))
    modules = {module_name(p, root) for p in files}
    found: list[Import] = []
    for path in files:
        name = module_name(path, root)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from pkg import module` depends on that module, not on the package's __init__ alone
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            rel = str(path.relative_to(root))
            found.extend(Import(rel, node.lineno, name, target) for target in dict.fromkeys(targets))
    return found


def package_of(module: str) -> str:
    """The rules' name for a module's package: engine, store, … or a top-level module's own name."""
    parts = module.split(".")
    if parts[0] == "tokenflow":
        return "tokenflow"
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def is_internal(target: str) -> bool:
    return target.split(".")[0] in TOP


def allowed(importer: str, target: str) -> bool:
    package = package_of(importer)
    if is_internal(target):
        if target.split(".")[0] == "tokenflow":
            return package == "tokenflow"
        if target == "tokenflow_tui":  # the top-level package's names are the engine's
            target = "tokenflow_tui.engine"
        if package_of(target) == package:
            return True
        inside = target.partition(".")[2]
        return any(inside == rule or inside.startswith(rule + ".") for rule in ALLOWED[package])
    top = target.split(".")[0]
    if top in sys.stdlib_module_names or package not in THIRD_PARTY:
        return True
    return top in THIRD_PARTY[package]


def violations(imports: list[Import]) -> list[str]:
    return [f"{i.file}:{i.line}: {i.importer} imports {i.target}" for i in imports if not allowed(i.importer, i.target)]


def package_cycles(imports: list[Import]) -> list[str]:
    """Each circle of imports between packages, written `a -> b -> a`, found once from its smallest name."""
    edges: dict[str, set[str]] = {}
    for i in imports:
        if is_internal(i.target) and package_of(i.importer) != package_of(i.target):
            edges.setdefault(package_of(i.importer), set()).add(package_of(i.target))
    cycles: list[str] = []

    def walk(path: list[str]) -> None:
        for nxt in sorted(edges.get(path[-1], ())):
            if nxt == path[0]:
                cycles.append(" -> ".join([*path, nxt]))
            elif nxt not in path and nxt > path[0]:
                walk([*path, nxt])

    for start in sorted(edges):
        walk([start])
    return cycles


def test_the_tree_keeps_the_import_rules():
    imports = read_imports(REPO)
    assert len({i.file for i in imports}) > 100  # the scan found the tree
    found = violations(imports)
    assert not found, "imports that break the rules of docs/architecture.md:\n" + "\n".join(found)


def test_no_package_imports_another_in_a_circle():
    cycles = package_cycles(read_imports(REPO))
    assert not cycles, "packages that import each other:\n" + "\n".join(cycles)


def test_only_the_cluster_package_imports_ray():
    # ray is the optional [ray] extra: any other import of it would break installs without it
    found = [
        f"{i.file}:{i.line}: {i.importer} imports {i.target}"
        for i in read_imports(REPO)
        if (i.target == "ray" or i.target.startswith("ray.")) and not i.importer.startswith("tokenflow_tui.cluster")
    ]
    assert not found, "ray imported outside tokenflow_tui/cluster:\n" + "\n".join(found)


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_rules_catch_every_form_of_import(tmp_path):
    write_tree(
        tmp_path,
        {
            "tokenflow_tui/__init__.py": "from .engine import task\n",
            "tokenflow_tui/engine/__init__.py": "",
            "tokenflow_tui/engine/task.py": "import json\nimport orjson\n\ndef f():\n    from ..ui import app\n",
            "tokenflow_tui/ui/__init__.py": "",
            "tokenflow_tui/ui/app.py": "from ..run import contract, runner\nfrom tokenflow_tui.run.contract import X\n",
            "tokenflow_tui/run/__init__.py": "",
            "tokenflow_tui/run/contract.py": "from ..engine import clock\n",
            "tokenflow_tui/run/runner.py": "import tokenflow_tui.ui.app\n",
            "tokenflow_tui/store/__init__.py": "",
            "tokenflow_tui/store/records.py": "import tomli_w\nimport httpx\nfrom ..engine import task\n",
            "tokenflow/__init__.py": "from tokenflow_tui.engine import *\n",
        },
    )
    imports = read_imports(tmp_path)
    assert violations(imports) == [
        "tokenflow_tui/engine/task.py:2: tokenflow_tui.engine.task imports orjson",
        "tokenflow_tui/engine/task.py:5: tokenflow_tui.engine.task imports tokenflow_tui.ui.app",
        "tokenflow_tui/run/runner.py:1: tokenflow_tui.run.runner imports tokenflow_tui.ui.app",
        "tokenflow_tui/store/records.py:2: tokenflow_tui.store.records imports httpx",
        "tokenflow_tui/ui/app.py:1: tokenflow_tui.ui.app imports tokenflow_tui.run.runner",
    ]
    assert package_cycles(imports) == ["engine -> ui -> run -> engine", "run -> ui -> run"]


ENGINE_MODULES = sorted(f"tokenflow_tui.engine.{m.name}" for m in pkgutil.iter_modules(tokenflow_tui.engine.__path__))
STORE_MODULES = sorted(f"tokenflow_tui.store.{m.name}" for m in pkgutil.iter_modules(tokenflow_tui.store.__path__))
ENGINE_FORBIDDEN = ("textual", "httpx", "aiohttp", "orjson", "tomllib", "tomli_w", "json")
STORE_FORBIDDEN = ("textual", "httpx", "aiohttp")


def loaded_after_import(module: str, libraries: tuple[str, ...]) -> list[str]:
    """Which of `libraries` a fresh interpreter has loaded after importing `module`."""
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        f"print(','.join(sorted(m for m in {libraries!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.strip().split(",") if name]


def test_core_modules_are_found():
    assert "tokenflow_tui.engine.task" in ENGINE_MODULES
    assert "tokenflow_tui.store.results_file" in STORE_MODULES


def test_the_import_check_sees_a_loaded_library():
    assert loaded_after_import("tokenflow_tui.endpoint.transport", STORE_FORBIDDEN) == ["aiohttp", "httpx"]


@pytest.mark.parametrize("module", ["tokenflow_tui.engine", "tokenflow", *ENGINE_MODULES])
def test_engine_module_imports_no_ui_http_or_file_format(module):
    assert loaded_after_import(module, ENGINE_FORBIDDEN) == []


@pytest.mark.parametrize("module", STORE_MODULES)
def test_store_module_imports_no_ui_or_http(module):
    assert loaded_after_import(module, STORE_FORBIDDEN) == []
