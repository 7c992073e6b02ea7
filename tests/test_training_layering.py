"""training/ reads one way: checked on the source (every import statement, including those
inside functions), as tests/test_layering.py does for kpdesk/.

- no import circle between modules, nor between the sub-packages (``training.data``,
  ``training.nets``, ...; a top-level module such as ``training.config`` counts as its own unit);
- nothing but ``training/__main__.py`` imports ``training.cli`` (the CLI only parses and
  dispatches; a job never reaches back into it);
- no private name (``_x``) is taken from another training module, by ``from m import _x``
  or by ``m._x`` on an imported module.
"""

from __future__ import annotations

import ast
from pathlib import Path

from fixtures import import_from_base, imports_in

TRAINING = Path(__file__).resolve().parents[1] / "training"


def _module_name(path: Path) -> str:
    parts = path.relative_to(TRAINING.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, tuple[str, bool]]:
    """{dotted module name: (source, is a package __init__)} for every file under training/."""
    return {_module_name(p): (p.read_text(), p.name == "__init__.py") for p in sorted(TRAINING.rglob("*.py"))}


def _package_of(name: str, is_pkg: bool) -> str:
    return name if is_pkg else name.rpartition(".")[0]


def _resolve(name: str, modules: set[str]) -> str | None:
    """The training module an imported dotted name refers to (``training.jobs.train.run_train``
    -> ``training.jobs.train``), or None outside training."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """{module: the training modules it imports}, package ``__init__`` modules included."""
    modules = set(sources)
    graph: dict[str, set[str]] = {}
    for mod, (src, is_pkg) in sources.items():
        targets = {_resolve(n, modules) for n in imports_in(src, _package_of(mod, is_pkg))}
        graph[mod] = {t for t in targets if t and t != mod}
    return graph


def unit_of(module: str) -> str:
    """``training.prune.job`` -> ``training.prune``; ``training.config`` -> itself."""
    return ".".join(module.split(".")[:2])


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as ``[a, b, ..., a]``, or [] when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return []

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return []


def private_imports(source: str, pkg: str, modules: set[str]) -> list[str]:
    """``_x`` names this source takes from training modules: ``from training.m import _x``
    and ``m._x`` where ``m`` is a training module it imported."""
    tree = ast.parse(source)
    bad: list[str] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = import_from_base(node, pkg)
            if _resolve(base, modules) is None:
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                if full in modules:
                    aliases[a.asname or a.name] = full
                elif a.name.startswith("_") and not a.name.startswith("__"):
                    bad.append(f"{a.name} from {base}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in modules:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            bad.append(f"{node.attr} from {aliases[node.value.id]}")
    return bad


# -- the checks on training/ -----------------------------------------------------------------
def test_training_is_split_into_sub_packages() -> None:
    units = {unit_of(m) for m in _sources()}
    assert {"training.data", "training.nets", "training.jobs", "training.distill", "training.prune",
            "training.evaluation", "training.cli"} <= units


def test_no_import_circle_between_training_modules() -> None:
    assert find_cycle(import_graph(_sources())) == []


def test_no_import_circle_between_training_sub_packages() -> None:
    units: dict[str, set[str]] = {}
    for mod, targets in import_graph(_sources()).items():
        units.setdefault(unit_of(mod), set()).update(unit_of(t) for t in targets if unit_of(t) != unit_of(mod))
    assert find_cycle(units) == []


def test_only_main_imports_the_cli() -> None:
    importers = sorted(m for m, targets in import_graph(_sources()).items() if "training.cli" in targets)
    assert importers == ["training.__main__"]


def test_no_private_name_crosses_training_modules() -> None:
    sources = _sources()
    bad = [f"{mod} takes {b}" for mod, (src, is_pkg) in sources.items()
           for b in private_imports(src, _package_of(mod, is_pkg), set(sources))]
    assert bad == []


# -- the checks can fail ---------------------------------------------------------------------
def test_cycle_finder_sees_a_circle_through_a_function_level_import() -> None:
    sources = {
        "training.a": ("from training.b import f\n", False),
        "training.b": ("def f():\n    from training.c import g\n", False),
        "training.c": ("import training.a\n", False),
        "training.d": ("from training.a import f\n", False),
    }
    assert find_cycle(import_graph(sources)) == ["training.a", "training.b", "training.c", "training.a"]
    sources["training.c"] = ("import os\n", False)
    assert find_cycle(import_graph(sources)) == []


def test_relative_imports_resolve_inside_sub_packages() -> None:
    sources = {
        "training.prune": ("", True),
        "training.prune.job": ("from .criterion import make_importance\nfrom ..jobs import train\n", False),
        "training.prune.criterion": ("", False),
        "training.jobs": ("", True),
        "training.jobs.train": ("", False),
    }
    assert import_graph(sources)["training.prune.job"] == {"training.prune.criterion", "training.jobs",
                                                           "training.jobs.train"}
    assert unit_of("training.prune.job") == "training.prune" and unit_of("training.config") == "training.config"


def test_private_name_detector() -> None:
    modules = {"training.cli", "training.evaluation", "training.evaluation.bench"}
    src = ("from training.cli import _add_job_args, main\n"
           "from training.evaluation import bench as b\n"
           "import training.evaluation.bench as bb\n"
           "def f():\n    return b._table, bb._f, b.__name__, b.markdown\n"
           "from kpdesk.vision.labels import _private_but_not_training\n")
    assert sorted(private_imports(src, "training.evaluation", modules)) == [
        "_add_job_args from training.cli", "_f from training.evaluation.bench", "_table from training.evaluation.bench"]
    assert private_imports("from .bench import _f\n", "training.evaluation", modules) == [
        "_f from training.evaluation.bench"]
