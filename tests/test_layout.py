"""The floor plan: vgbench's imports form no circle, and every module has its test file."""

import ast
from pathlib import Path

from tests.conftest import REPO

SRC = REPO / "src"
PACKAGES = ("vgbench", "hydra_plugins")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Each module of `root` -> the modules of `root` it imports (at the top or inside a function)."""
    paths = {module_name(path): path for path in root.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                # `from package import module` imports that module; `from module import name`, the module
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names}
        graph[name] = {target for target in targets if target in paths and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle of imports, found by a depth-first search (each reported once per entry point)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_cycle_finder_finds_a_circle_and_passes_a_tree():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_package_imports_form_no_circle():
    graph = import_graph()
    assert graph["vgbench.jobs"] >= {"vgbench.train", "vgbench.memory"}  # the graph sees imports in functions
    assert cycles(graph) == []


def test_the_ground_floor_imports_nothing_of_vgbench():
    graph = import_graph()
    assert graph["vgbench.errors"] == set()
    assert graph["vgbench.config"] == {"vgbench.errors"}


def test_every_module_has_its_test_file():
    """tests/test_<module>.py for each module of vgbench; one file for each subpackage (report, lessons)
    and one for the Hydra launchers (tests/README.md)."""
    expected = {}
    for path in (SRC / "vgbench").glob("*.py"):
        if path.stem not in ("__init__", "__main__"):
            expected[path.stem] = f"test_{path.stem}.py"
    for package in ("report", "lessons"):
        expected[package] = f"test_{package}.py"
    expected["hydra_plugins.vgbench_launchers"] = "test_launchers.py"
    missing = sorted(name for name, test in expected.items() if not (REPO / "tests" / test).exists())
    assert missing == []
