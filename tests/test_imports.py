"""The package boundaries, checked on the source: what may import what, and no import cycles.

- ``toolkit`` (what everything shares) imports neither ``codec`` nor ``tts``;
- ``codec`` never imports ``tts``;
- ``tts`` uses the codec only through its public API (``from codec import ...``, what ``codec/__init__.py`` exports);
- no package and no test imports a recipe (recipes are run, not imported);
- no two modules of the packages import each other, directly or around a loop (imports inside functions count).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolkit", "codec", "tts")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[Tuple[int, str, List[str]]]:
    """(line, imported module, imported names) of every import statement in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            yield node.lineno, base, [alias.name for alias in node.names]


def sources(*tops: str) -> List[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def under(module: str, top: str) -> bool:
    return module == top or module.startswith(top + ".")


def violations(files: List[Path], rule) -> List[str]:
    return [f"{path.relative_to(ROOT)}:{line}: {module}" for path in files for line, module, names in imports(path)
            if rule(module, names)]


def test_toolkit_imports_no_package():
    assert violations(sources("toolkit"), lambda m, _: under(m, "codec") or under(m, "tts")) == []


def test_codec_never_imports_tts():
    assert violations(sources("codec"), lambda m, _: under(m, "tts")) == []


def test_tts_uses_only_the_codec_public_api():
    import codec

    def private(module: str, names: List[str]) -> bool:
        if module.startswith("codec."):
            return True  # a submodule: codec internals
        return module == "codec" and any(n not in codec.__all__ for n in names)

    assert violations(sources("tts"), private) == []


def test_nothing_imports_recipes():
    files = sources(*PACKAGES, "tests", "benchmarks")
    assert violations(files, lambda m, _: under(m, "recipes")) == []
    # nor puts a recipe folder on sys.path to import its script by name
    assert [where for p in files for where in recipe_paths(p)] == []


def recipe_paths(path: Path) -> List[str]:
    """Statements of a file that change ``sys.path`` with an expression that names ``recipes``."""
    text = path.read_text()
    found = []
    for node in ast.walk(ast.parse(text)):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            target = target.value if isinstance(target, ast.Subscript) else target
        if ast.unparse(target) == "sys.path" if target is not None else False:
            if "recipes" in (ast.get_source_segment(text, node) or ""):
                found.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{node.lineno}")
    return sorted(found)


def import_graph() -> Dict[str, Set[str]]:
    modules = {module_name(p): p for p in sources(*PACKAGES)}
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, module, names in imports(path):
            for target in [module] + [f"{module}.{n}" for n in names]:
                if target in modules and target != name and not name.startswith(target + "."):
                    graph[name].add(target)  # a package's own __init__ is not a cycle with its modules
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_recipe_path_finder_finds_them(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('import sys\nsys.path.insert(0, str(ROOT / "recipes" / "mini"))\nsys.path[:0] = ["recipes/x"]\n'
                     'sys.path.insert(0, str(ROOT))\n')
    assert recipe_paths(probe) == [f"{probe}:2", f"{probe}:3"]


@pytest.mark.parametrize("graph, expected", [({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
                                             ({"a": {"b"}, "b": {"c"}, "c": set()}, [])])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert cycles(graph) == expected
