"""The layers (``benchmarks.structure.LAYERS``, lowest first: cobuy_files < data_checks < training < serving <
orchestration < benchmarks) as the imports have them, read from the source with ``ast``: no module imports a higher
layer, no group of modules imports itself round (lazy imports inside functions count: they still tie the modules
together; imports under ``if TYPE_CHECKING:`` do not, they never run), and nothing imports ``benchmarks``.
``tests/test_definitions.py`` keeps dagster in ``orchestration``."""
from __future__ import annotations

from pathlib import Path

from benchmarks.structure import LAYERS, Import, cycles, imports, upward

ROOT = Path(__file__).resolve().parent.parent


def _imports() -> tuple[list[str], list[Import]]:
    modules, found = imports(ROOT)
    return sorted(modules), found


def test_every_layer_package_exists_and_is_read():
    modules, found = _imports()
    assert {m.split(".")[0] for m in modules} == set(LAYERS)
    assert len(found) > 300  # the parser sees the project's imports (a broken walk would pass every check below)
    assert any(i.lazy for i in found) and any(not i.lazy for i in found)


def test_no_module_imports_a_higher_layer():
    _, found = _imports()
    bad = sorted({f"{i.source} -> {i.target} (line {i.line}{', in a function' if i.lazy else ''})"
                  for i in upward(found)})
    assert not bad, "upward imports (move the shared code down a layer):\n" + "\n".join(bad)


def test_no_import_cycle_among_the_projects_modules():
    modules, found = _imports()
    found_cycles = cycles(modules, found)
    assert not found_cycles, "import cycles (strongly connected components):\n" + "\n".join(map(str, found_cycles))


def test_nothing_imports_the_benchmarks():
    _, found = _imports()
    bad = sorted({f"{i.source} -> {i.target}" for i in found
                  if i.target.split(".")[0] == "benchmarks" and i.source.split(".")[0] != "benchmarks"})
    assert not bad, bad


def test_the_checks_catch_what_they_look_for(tmp_path):
    """A planted upward import, a planted lazy cycle and a TYPE_CHECKING-only import, in a scratch tree."""
    for package in LAYERS:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "training" / "a.py").write_text("import serving.b\n")
    (tmp_path / "serving" / "b.py").write_text("def f():\n    from serving import c\n")
    (tmp_path / "serving" / "c.py").write_text("from serving.b import f\n")
    (tmp_path / "data_checks" / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                   "    import training.a\n")
    modules, found = imports(tmp_path)
    assert [(i.source, i.target) for i in upward(found)] == [("training.a", "serving.b")]
    assert cycles(sorted(modules), found) == [["serving.b", "serving.c"]]
    assert not [i for i in found if i.source == "data_checks.d"]
