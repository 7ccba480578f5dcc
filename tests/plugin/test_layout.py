"""The package layout holds the design: no import cycle, and a host contract that stands alone.

Read from the source (``ast``), so the check sees every module-level import, including the ones
an import order happens to hide; a fresh interpreter then confirms that importing the contract
loads no implementation module.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import voice_channel

PACKAGE_DIR = Path(voice_channel.__file__).parent
#: The host contract: what a plugin author reads and imports (the package face re-exports it).
CONTRACT = {
    "voice_channel",
    "voice_channel.contract",
    "voice_channel.hookspecs",
    "voice_channel.markers",
    "voice_channel.runtime",
    "voice_channel.settings",
}
#: Where an import inside a function is the point: heavy optional parts loaded only when used
#: (the local engine's models, the CLI's subcommands) and gunicorn's hooks, which run in the
#: arbiter before the app exists. Not a way around a cycle.
LAZY_BY_DESIGN = ("voice_channel.cli", "voice_channel.local_engine", "voice_channel.gunicorn_conf")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _target(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.Module) -> tuple[set[str], list[tuple[int, str]]]:
    """Module-level imports of our modules, and the ones made inside a function (line, module)."""
    top: set[str] = set()
    local: list[tuple[int, str]] = []

    def names(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        return [f"{base}.{alias.name}" for alias in node.names] + [base]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in names(child):
                    target = _target(name) if name.startswith("voice_channel") else None
                    if target is None:
                        continue
                    if in_function:
                        local.append((child.lineno, target))
                    else:
                        top.add(target)
                        # Importing a.b.c runs the packages a and a.b first.
                        parent = target.rpartition(".")[0]
                        while parent:
                            top.add(parent)
                            parent = parent.rpartition(".")[0]
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, False)
    return top, local


GRAPH: dict[str, set[str]] = {}
LOCAL: dict[str, list[tuple[int, str]]] = {}
for _name, _path in MODULES.items():
    _top, _local = _imports(ast.parse(_path.read_text(encoding="utf-8")))
    # A module's own ancestor packages are already being imported when it runs: not an edge.
    GRAPH[_name] = {t for t in _top if t != _name and not _name.startswith(t + ".")}
    LOCAL[_name] = _local


def _reachable(start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for nxt in GRAPH[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_no_import_cycle() -> None:
    # A package importing its own submodules (its face) is not a cycle: the face is run last.
    cycles = sorted(
        name
        for name in MODULES
        if any(name in _reachable(other) for other in GRAPH[name] if not other.startswith(name + "."))
    )
    assert cycles == []


def test_no_function_local_import_of_our_modules() -> None:
    found = {
        f"{name}:{line} imports {target}"
        for name, imports in LOCAL.items()
        if not name.startswith(LAZY_BY_DESIGN)
        for line, target in imports
        if not target.startswith("voice_channel.local_engine")
    }
    assert found == set()


def test_contract_modules_import_no_implementation_module() -> None:
    for name in CONTRACT:
        assert _reachable(name) - {name} <= CONTRACT, name


def test_importing_the_contract_loads_no_implementation_module() -> None:
    script = (
        "import json, sys\n"
        f"for name in {sorted(CONTRACT)!r}: __import__(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('voice_channel'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    assert set(json.loads(out)) == CONTRACT


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    # One interpreter per module: a cycle shows up only for some import orders.
    core = sorted(n for n in MODULES if not n.startswith(("voice_channel.local_engine", "voice_channel.cli")))
    script = (
        "import importlib, subprocess, sys\n"
        f"bad = [n for n in {core!r} if subprocess.run([sys.executable, '-c', 'import ' + n]).returncode]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
