"""The package layout is the pipeline: data → models → runs → blend | tune → queue |
submissions → report → cli, with shared pieces below all of them, and nothing imports a
higher stage.

Read from the source with `ast`, every import counts, the ones inside functions too. The
module-level import graph must also be acyclic with the model registry made eager (every
family imported by comp.models), so any module can be imported first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import comp
from comp.models import available_models

PACKAGE = Path(comp.__file__).parent
STAGES = {
    "comp.data": 1,
    "comp.models": 2,
    "comp.runs": 3,
    "comp.project": 3,
    "comp.blend": 4,
    "comp.tune": 4,
    "comp.queue": 5,
    "comp.submissions": 5,
    "comp.report": 6,
    "comp.cli": 7,
    "comp.__main__": 7,
}
SHARED = 0  # comp.errors, atomic, typed, progress, metrics, clock: used by every stage


def stage(module: str) -> int:
    for prefix, number in STAGES.items():
        if module == prefix or module.startswith(prefix + "."):
            return number
    return SHARED


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("comp", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    known = modules()
    return {name for name in names if name in known and name.startswith("comp")}


def test_no_module_imports_a_higher_stage():
    upward = [
        f"{module} (stage {stage(module)}) imports {target} (stage {stage(target)})"
        for module, path in modules().items()
        for target in imports(path, module_level_only=False)
        if stage(target) > stage(module)
    ]
    assert not upward, "\n".join(upward)


def test_families_do_not_import_each_other():
    families = {f"comp.models.{name}" for name in available_models()}
    crossing = [f"{module} imports {target}" for module in families
                for target in imports(modules()[module], module_level_only=False)
                if target in families and target != module]
    assert not crossing, "shared pieces belong in comp/models/_*.py: " + "; ".join(crossing)


def test_module_level_imports_have_no_cycle_even_with_an_eager_registry():
    # a package importing its own submodule (`from comp.report import plots`) is no cycle
    graph = {module: imports(path, module_level_only=True) - {module} for module, path in modules().items()}
    graph["comp.models"] |= {f"comp.models.{name}" for name in available_models()}
    visiting, done = set(), set()

    def visit(module: str, trail: list[str]) -> None:
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " → ".join([*trail, module])
        visiting.add(module)
        for target in sorted(graph.get(module, ())):
            visit(target, [*trail, module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_the_check_sees_an_upward_import(tmp_path):
    """The layout test can fail: a data module that imported the run store would be named."""
    fake = tmp_path / "fake.py"
    fake.write_text("def later():\n    from comp.runs.store import RunStore\n")
    assert "comp.runs.store" in imports(fake, module_level_only=False)
    assert "comp.runs.store" not in imports(fake, module_level_only=True)
    assert stage("comp.runs.store") > stage("comp.data.folds")
