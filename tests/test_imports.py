"""Import direction: the modelling files stand alone (they load as remote code), nothing below the command line
imports it or the demo, and no module imports another that imports it back."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "modeling_scot"
MODELLING_FILES = ("configuration_scot", "modeling_scot", "losses", "activations", "encoders")
MODELLING_IMPORTS = {"torch", "transformers", "safetensors", "__future__", "collections", "contextlib", "dataclasses",
                     "math", "os", "pathlib", "tempfile", "typing"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (relative imports resolved), at any depth of the file but `if TYPE_CHECKING:`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    type_only = {id(inner) for node in ast.walk(tree) if _is_type_checking_block(node) for inner in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                found |= {target} | ({f"{target}.{alias.name}" for alias in node.names} if not node.module else set())
            else:
                found.add(node.module)
    return found


def _is_type_checking_block(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:`, whose imports never run."""
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


MODULES = {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def internal(imports: set[str]) -> set[str]:
    """The package's modules among `imports`, with the packages that hold them: importing `a.b.c` runs `a.b`'s
    `__init__` first."""
    modules = {name for name in imports if name.split(".")[0] == "modeling_scot" and name in MODULES}
    return modules | {parent for name in modules for parent in _parents(name) if parent in MODULES}


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


@pytest.mark.parametrize("name", MODELLING_FILES)
def test_modelling_files_import_only_torch_transformers_safetensors_and_each_other(name):
    imports = MODULES[f"modeling_scot.{name}"]
    siblings = {f"modeling_scot.{other}" for other in MODELLING_FILES}
    outside = {i for i in imports if i.split(".")[0] not in MODELLING_IMPORTS and i not in siblings}
    assert not outside, f"{name} imports {sorted(outside)}"


def test_nothing_below_the_cli_imports_the_cli_or_the_demo():
    for name, imports in MODULES.items():
        if name.startswith("modeling_scot.cli"):
            continue
        bad = {i for i in internal(imports) if i.startswith("modeling_scot.cli")}
        if not name.startswith("modeling_scot.demo"):
            bad |= {i for i in internal(imports) if i.startswith("modeling_scot.demo")}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_no_import_cycles():
    graph = {name: {i for i in internal(imports) if i != name and not name.startswith(i + ".")} for name, imports in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
