"""The layers of ``checker`` from its imports (``docs/architecture.md``).

Reference: the source itself, parsed with ``ast`` (every ``import`` and ``from ... import``,
including those inside functions), never imported.  Enforced:

* every module belongs to a package of ``LAYERS`` (a new package is added there, in one place);
* a module imports only modules of its own layer or of lower layers (``LAYERS`` ranks);
* the entry modules ``checker/NAME.py`` import only their command ``checker.commands.NAME``;
* no import circle between modules (function-level imports included).

One exception: ``from checker import __version__`` (the root package defines it and imports
nothing at import time; its exports are lazy).

See the graph: ``python tests/test_layers.py`` prints every module's layer and imports.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "checker"

#: The layers, lowest first: a module may import its own rank or lower.  ``geometry`` is above
#: ``rigorous`` (the dual certificate uses the branch and bound of ``rigorous.sphere``; the
#: rigorous path never imports the geometry).  Add a new package here.
LAYERS: dict[str, int] = {
    "checker.core": 0,
    "checker.dynamics": 1,
    "checker.rigorous": 2,
    "checker.geometry": 3,
    "checker.theorem": 4,
    "checker.studies": 5,
    "checker.stages": 5,
    "checker.stationary": 5,
    "checker.basin": 5,
    "checker.commands": 6,
}
#: ``checker/NAME.py`` (or ``checker/NAME/__main__.py`` when NAME is a library package), the
#: ``python -m checker.NAME`` entries, and the root package's lazy exports.
ENTRY_RANK = 7
ROOT_RANK = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[tuple[str, int]]:
    """The ``checker`` modules that ``name`` imports, with the line of each import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "checker" or alias.name.startswith("checker."):
                    out.add((alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == "checker" or target.startswith("checker.")):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    out.add((sub, node.lineno))
                elif not (target == "checker" and alias.name == "__version__"):
                    out.add((target, node.lineno))
    return out


def rank(name: str) -> int | None:
    if name == "checker":
        return ROOT_RANK
    if name.count(".") == 1 and (PACKAGE / (name.split(".")[1] + ".py")).is_file():
        return ENTRY_RANK
    if name.count(".") == 2 and name.endswith(".__main__"):
        return ENTRY_RANK  # python -m checker.NAME where NAME is also a package of the library
    for package, r in LAYERS.items():
        if name == package or name.startswith(package + "."):
            return r
    return None


def graph() -> dict[str, set[tuple[str, int]]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_every_module_is_in_a_known_layer() -> None:
    unknown = [name for name in modules() if rank(name) is None]
    assert not unknown, (f"modules in a package that has no layer: {unknown}; add the package to LAYERS "
                         "in tests/test_layers.py (and to docs/architecture.md)")


def test_no_import_from_a_higher_layer() -> None:
    bad = []
    for name, deps in graph().items():
        r = rank(name)
        for dep, line in sorted(deps):
            rd = rank(dep)
            if r is None or rd is None or rd > r:
                bad.append(f"{name} (layer {r}) imports {dep} (layer {rd}) at line {line}")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_entry_modules_only_import_their_command() -> None:
    bad = []
    for name, deps in graph().items():
        if rank(name) != ENTRY_RANK:
            continue
        command = "checker.commands." + name.split(".")[1]
        extra = sorted(dep for dep, _ in deps if dep != command)
        if extra or not deps:
            bad.append(f"{name} imports {extra or 'nothing'}; an entry imports only {command}")
    assert not bad, "\n".join(bad)


def test_no_import_circle() -> None:
    edges = {name: {dep for dep, _ in deps} for name, deps in graph().items()}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                circles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_table_sees_the_imports() -> None:
    # The parser itself: a relative import, a function-level import and ``from pkg import module``
    # are all found (else every test above would pass vacuously).
    deps = {dep for dep, _ in graph()["checker.commands.theorem1"]}
    assert {"checker.theorem.check", "checker.commands.cli", "checker.commands.figures"} <= deps
    deps = {dep for dep, _ in graph()["checker.theorem.check"]}
    assert {"checker.rigorous.duality", "checker.geometry.certificate", "checker.dynamics.gd"} <= deps


if __name__ == "__main__":  # the import graph, layer by layer
    g = graph()
    for name in sorted(g, key=lambda n: (rank(n) if rank(n) is not None else -1, n)):
        deps = sorted({dep for dep, _ in g[name]})
        print(f"[{rank(name)}] {name}" + (f" -> {', '.join(deps)}" if deps else ""), file=sys.stdout)
