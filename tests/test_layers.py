"""The core's layers (docs/architecture.md): no import runs up a layer or into another
package's private module, and no core modules import each other in a cycle.

For the layers every import counts: at module level, inside functions, and under
``TYPE_CHECKING`` (a type-only import upward still ties a lower layer to an upper
one). For cycles, imports inside functions count and type-only ones do not.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core" / "src" / "tapyard"

#: Each unit of the core and the units it may import, lowest layer first. A unit is a
#: layer package (``tapyard/base/``...) or one of the public top-level modules.
ALLOWED: dict[str, frozenset[str]] = {}


def _layer(unit: str, *below: str) -> None:
    ALLOWED[unit] = frozenset(below).union(*(ALLOWED[b] for b in below))


_layer("base")
_layer("http", "base")
_layer("auth", "base", "http")
_layer("destinations", "base")
_layer("files", "base")  # tapyard.files (public): the records inside data files
_layer("sources", "base", "http", "auth", "files")
_layer("hookspecs", "base", "http")  # the plugin API's specifications, read by the manager
_layer("plugins", "auth", "destinations", "sources", "hookspecs")
_layer("engine", "plugins", "files")
_layer("facade", "engine")  # tapyard/__init__.py
_layer("testing", "facade")  # the pytest plugin, cassettes and fakes for connector authors
_layer("jobs", "facade")
_layer("marketplace", "testing")  # the author kit runs a connector's tests under tapyard.testing
_layer("cli", "jobs", "marketplace")  # every command, jobs' and the kit's included

#: Known violations, each (importing module, imported module). This list may only
#: shrink: each entry says what clears it (the "plugins" helper of issue 14 owns the
#: plugin manager and the run context; /work/brief/LAYERS.md has the same list).
KNOWN: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Import:
    importer: str  # module name, tapyard.base._model
    target: str  # the module the imported name lives in, tapyard.plugins._manager
    names: tuple[str, ...]  # the names imported from it ("" for a plain ``import``)
    line: int
    via: str  # the module written in the import statement
    typing_only: bool = False  # under ``if TYPE_CHECKING:``: never runs


def module_name(path: Path, root: Path) -> str:
    parts = ("tapyard", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: Private top-level modules and the unit they serve: the emulators and the shared
#: object-store scenario are exported by tapyard.testing.
BESIDE = {"__main__": "cli", "_emulators": "testing", "_scenario": "testing"}


def unit_of(module: str) -> str:
    """The layer a core module belongs to."""
    parts = module.split(".")
    if module == "tapyard":
        return "facade"
    return BESIDE.get(parts[1], parts[1])


def is_package(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def read_tree(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _exported(path: Path) -> dict[str, str]:
    """What a package ``__init__`` re-exports: name -> the module it imports it from.

    A re-export is an import under ``if TYPE_CHECKING:`` (the lazy map imports it
    at run time) or a module-level import of a name listed in ``__all__``.
    """
    tree = ast.parse(path.read_text())
    listed: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            listed = set(ast.literal_eval(node.value))
    checking = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    names: dict[str, str] = {}
    for node in [*tree.body, *(n for block in checking for n in block.body)]:
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("tapyard"):
            for alias in node.names:
                name = alias.asname or alias.name
                if node not in tree.body or name in listed:
                    names[name] = node.module or ""
    return names


def _reexports(modules: dict[str, Path]) -> dict[str, dict[str, str]]:
    return {m: _exported(p) for m, p in modules.items() if is_package(m, modules)}


def _absolute(node: ast.ImportFrom, importer: str, modules: dict[str, Path]) -> str:
    if not node.level:
        return node.module or ""
    package = importer if is_package(importer, modules) else importer.rsplit(".", 1)[0]
    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(modules: dict[str, Path]) -> Iterator[Import]:
    """Every tapyard import in the tree, each name resolved to the module that defines it."""
    reexports = _reexports(modules)

    def resolve(module: str, name: str) -> str:
        seen = set()
        while module in reexports and name in reexports[module] and module not in seen:
            seen.add(module)
            module = reexports[module][name]
        return module

    for importer, path in modules.items():
        tree = ast.parse(path.read_text())
        checking = {
            id(inner)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
            for stmt in block.body
            for inner in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            typing_only = id(node) in checking
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "tapyard":
                        yield Import(importer, alias.name, ("",), node.lineno, alias.name, typing_only)
            elif isinstance(node, ast.ImportFrom):
                via = _absolute(node, importer, modules)
                if via.split(".")[0] != "tapyard":
                    continue
                for alias in node.names:
                    submodule = f"{via}.{alias.name}"
                    if submodule in modules:  # from tapyard import hookspecs
                        yield Import(importer, submodule, ("",), node.lineno, submodule, typing_only)
                    elif is_package(importer, modules) and via.startswith(importer + "."):
                        continue  # a package's own re-exports
                    else:
                        yield Import(importer, resolve(via, alias.name), (alias.name,), node.lineno, via, typing_only)


def violations(root: Path) -> list[str]:
    """Each import that runs up a layer or into another package's private module."""
    modules = read_tree(root)
    found = []
    for imp in imports_of(modules):
        if imp.target not in modules and imp.via not in modules:
            found.append(f"{imp.importer}:{imp.line}: {imp.via} is not a core module")
            continue
        mine, theirs = unit_of(imp.importer), unit_of(imp.target)
        if (imp.importer, imp.target) in KNOWN:
            continue
        through = unit_of(imp.via)  # from tapyard import X: through the facade, whatever X is
        if through not in (mine, theirs) and through not in ALLOWED[mine]:
            found.append(f"{imp.importer}:{imp.line}: {mine} imports {imp.target} through {imp.via} ({through}), a layer above it")
            continue
        if mine == theirs:
            continue
        if theirs not in ALLOWED[mine]:
            found.append(f"{imp.importer}:{imp.line}: {mine} imports {imp.target} ({theirs}), a layer above it")
        elif any(part.startswith("_") for part in imp.via.split(".")[1:]):
            found.append(f"{imp.importer}:{imp.line}: imports {imp.via}, private to {theirs}")
        elif any(n.startswith("_") and not n.startswith("__") for n in imp.names if n):
            found.append(f"{imp.importer}:{imp.line}: imports private {imp.names} from {imp.via}")
    return found


def cycles(root: Path) -> list[list[str]]:
    """The import cycles among core modules (strongly connected components of more than one module).

    Imports inside functions count; imports under ``TYPE_CHECKING`` do not, since
    they never run (two modules may name each other's types).
    """
    modules = read_tree(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports_of(modules):
        if imp.typing_only:
            continue
        if imp.target in modules and imp.target != imp.importer and (imp.importer, imp.target) not in KNOWN:
            graph[imp.importer].add(imp.target)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_core_module_is_in_a_layer() -> None:
    units = {unit_of(m) for m in read_tree(CORE)}
    assert units <= set(ALLOWED), units - set(ALLOWED)


def test_no_import_runs_up_a_layer_or_into_a_private_module() -> None:
    assert violations(CORE) == []


def test_no_import_cycle_among_core_modules() -> None:
    assert cycles(CORE) == []


def test_the_known_violations_are_still_there() -> None:
    """An entry that no longer happens must leave KNOWN (the list only shrinks)."""
    present = {(i.importer, i.target) for i in imports_of(read_tree(CORE))}
    assert KNOWN - present == set()


#: The layer packages: each one's ``__init__`` says what it owns and what it may import.
PACKAGES = ("base", "http", "auth", "destinations", "sources", "plugins", "engine", "marketplace", "jobs")


def test_each_layer_package_says_what_it_owns_and_may_import() -> None:
    for unit in PACKAGES:
        doc = " ".join((ast.get_docstring(ast.parse((CORE / unit / "__init__.py").read_text())) or "").split())
        assert "may import" in doc and len(doc.split()) >= 20, unit


def test_each_layer_package_exports_what_it_says() -> None:
    """The TYPE_CHECKING imports, ``__all__`` and the lazy map of a package name the same things."""
    import importlib

    for unit in PACKAGES:
        package = importlib.import_module(f"tapyard.{unit}")
        declared = set(_exported(CORE / unit / "__init__.py"))
        assert declared == set(getattr(package, "__all__", [])), unit
        for name in declared:
            assert getattr(package, name) is not None, (unit, name)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tapyard"
    shutil.copytree(CORE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _plant(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_a_planted_upward_import_inside_a_function_fails(tree: Path) -> None:
    _plant(tree / "base" / "_values.py", "def planted() -> None:\n    from tapyard.engine import sync  # noqa\n")
    line = (tree / "base" / "_values.py").read_text().splitlines().index("def planted() -> None:") + 2
    assert set(violations(tree)) - set(violations(CORE)) == {
        f"tapyard.base._values:{line}: base imports tapyard.engine._sync (engine), a layer above it"
    }


def test_a_planted_import_of_a_private_module_fails(tree: Path) -> None:
    _plant(tree / "engine" / "_drift.py", "from tapyard.http._circuit import CircuitBreaker  # noqa")
    found = set(violations(tree)) - set(violations(CORE))
    assert len(found) == 1 and "imports tapyard.http._circuit, private to http" in found.pop()


def test_a_planted_cycle_is_found(tree: Path) -> None:
    _plant(tree / "base" / "_hints.py", "def planted() -> None:\n    from tapyard.base._config import load_config  # noqa\n")
    assert ["tapyard.base._config", "tapyard.base._hints"] in cycles(tree)


def test_a_layer_package_gives_what_its_module_holds_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports are read through, not copied: patching a module patches its package's name too."""
    import tapyard.base
    from tapyard.base import _hints

    def replaced(*args: object, **kwargs: object) -> str:
        return "replaced"

    assert tapyard.base.did_you_mean is _hints.did_you_mean
    monkeypatch.setattr(_hints, "did_you_mean", replaced)
    from tapyard.base import did_you_mean

    assert did_you_mean is replaced and tapyard.base.did_you_mean is replaced
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        tapyard.base.nothing_here  # noqa: B018
