"""The project's structure, measured from its source alone (``ast``, nothing imported): modules per package, the
import graph and its cycles, imports that go up the layers, and how many files name each model family.

    python -m benchmarks.structure --label after                       # this checkout
    git worktree add /tmp/before <commit> && python -m benchmarks.structure --root /tmp/before --label before
    python -m benchmarks.structure --docs                              # the table in docs/architecture.md

Both write into ``benchmarks/results/structure.json`` (one entry per label). The layers, lowest first, are
:data:`LAYERS`; a module may import its own layer and those below. Every ``import`` counts, at module level or
inside a function (a lazy import still runs, and still ties the two modules together); imports under
``if TYPE_CHECKING:`` do not (they never run), nor do classes loaded by name (``importlib.import_module``, the
family registry's lazy classes). ``tests/test_layering.py`` fails on any upward import, any cycle and any import
of ``benchmarks``.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# lowest first: a package may import its own modules and those of the packages before it
LAYERS = ("cobuy_files", "data_checks", "training", "serving", "orchestration", "benchmarks")
# the model family names, and the second vocabulary the code used before the registry (training.families)
FAMILY_NAMES = ("popularity", "association_rules", "itemknn", "ease", "gf_cf", "chebycf", "mf", "ials", "lightgcn",
                "blend", "hybrid", "mf_bpr", "mf_ials")


@dataclass(frozen=True)
class Import:
    """``source`` imports ``target`` (both project modules) at ``line``; ``lazy``: inside a function."""

    source: str
    target: str
    line: int
    lazy: bool


def module_files(root: Path) -> dict[str, Path]:
    """{dotted module name: file} of every Python file in the layer packages under ``root``."""
    out = {}
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST):
    """(import node, inside a function) for every import that can run (not under ``if TYPE_CHECKING:``)."""
    stack = [(tree, False)]
    while stack:
        node, lazy = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    stack.append((sub, lazy))
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, lazy
            stack.append((child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))))


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` is, or the nearest enclosing one (``a.b.func`` -> ``a.b``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(root: Path) -> tuple[dict[str, Path], list[Import]]:
    """The project's modules under ``root`` and every import between two of them."""
    modules = module_files(root)
    found = []
    for source, path in modules.items():
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node, lazy in _walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parent + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
                names = [n for n in names[:-1] if n in modules] or [base]  # a submodule, else the module itself
            for name in names:
                target = _resolve(name, modules)
                if target is not None and target != source:
                    found.append(Import(source, target, node.lineno, lazy))
    return modules, found


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def upward(found: list[Import]) -> list[Import]:
    """Imports of a higher layer's module."""
    return [i for i in found if layer(i.target) > layer(i.source)]


def cycles(modules: list[str], found: list[Import]) -> list[list[str]]:
    """The import graph's strongly connected components of more than one module (Tarjan, iterative), largest first."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for i in found:
        graph[i.source].add(i.target)
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return sorted(out, key=lambda c: (-len(c), c))


def is_benchmark(module: str) -> bool:
    """A benchmark or experiment module: in ``benchmarks``, or (before it existed) named like one."""
    leaf = module.rpartition(".")[2]
    return module.split(".")[0] == "benchmarks" or "benchmark" in leaf or leaf in (
        "itemsets_max_len", "mlxtend_reference", "locustfile", "benchmark_data")


def family_mentions(modules: dict[str, Path]) -> dict[str, int]:
    """{family name: library files (benchmarks aside) holding it as a string literal}: the places a family is
    named."""
    counts: Counter = Counter()
    for module, path in modules.items():
        if is_benchmark(module):
            continue
        literals = {n.value for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        counts.update(name for name in FAMILY_NAMES if name in literals)
    return {name: counts[name] for name in FAMILY_NAMES}


def measure(root: Path) -> dict:
    """The figures for the checkout at ``root``."""
    modules, found = imports(root)
    names = sorted(modules)
    per_package = {p: {"modules": sum(m.split(".")[0] == p for m in names),
                       "lines": sum(len(modules[m].read_text(encoding="utf-8").splitlines())
                                    for m in names if m.split(".")[0] == p)} for p in LAYERS}
    up = sorted({f"{i.source} -> {i.target}{' (in a function)' if i.lazy else ''}" for i in upward(found)})
    sccs = cycles(names, found)
    eager = cycles(names, [i for i in found if not i.lazy])
    bench = [m for m in names if is_benchmark(m)]
    into_bench = sorted({(i.source, i.target) for i in found if is_benchmark(i.target) and not is_benchmark(i.source)})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout
    return {
        "git_commit": commit.strip(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
        "modules": len(names), "packages": per_package, "import_edges": len({(i.source, i.target) for i in found}),
        "upward_imports": len(up), "upward_import_list": up,
        "cycles": len(sccs), "cycle_sizes": [len(c) for c in sccs], "cycle_modules": sccs,
        "cycles_module_level_only": len(eager),
        "benchmark_modules": len(bench),
        "benchmark_modules_outside_benchmarks": sum(m.split(".")[0] != "benchmarks" for m in bench),
        "library_imports_of_benchmark_modules": [f"{s} -> {t}" for s, t in into_bench],
        "library_files_naming_each_family": family_mentions(modules),
    }


def table(figures: dict[str, dict]) -> str:
    """Markdown: the figures of every label in ``figures`` (``structure.json``), one column each."""
    labels = list(figures)
    rows = [("commit", lambda f: f["git_commit"]), ("modules", lambda f: f["modules"])]
    rows += [(f"modules in `{p}`", lambda f, p=p: f["packages"][p]["modules"]) for p in LAYERS]
    rows += [("imports between project modules", lambda f: f["import_edges"]),
             ("upward imports (module pairs)", lambda f: f["upward_imports"]),
             ("import cycles (sizes)", lambda f: f"{f['cycles']} ({', '.join(map(str, f['cycle_sizes'])) or '-'})"),
             ("benchmark modules outside `benchmarks/`", lambda f: f["benchmark_modules_outside_benchmarks"]),
             ("library imports of benchmark modules", lambda f: len(f["library_imports_of_benchmark_modules"]))]
    rows += [(f"library files naming `{n}`", lambda f, n=n: f["library_files_naming_each_family"][n])
             for n in FAMILY_NAMES]
    lines = ["| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    lines += [f"| {name} | " + " | ".join(str(get(figures[label])) for label in labels) + " |" for name, get in rows]
    return "\n".join(lines)


def update_docs(figures: dict[str, dict], doc: Path = ROOT / "docs" / "architecture.md") -> None:
    """Rewrite the table between the structure markers of ``doc``."""
    start, end = "<!-- structure:start -->", "<!-- structure:end -->"
    text = doc.read_text()
    head, rest = text.split(start, 1)
    doc.write_text(f"{head}{start}\n{table(figures)}\n{end}{rest.split(end, 1)[1]}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.structure", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    ap.add_argument("--label", default="after", help="the entry to write, e.g. before or after")
    ap.add_argument("--out", type=Path, default=RESULTS / "structure.json")
    ap.add_argument("--docs", action="store_true", help="rewrite the table in docs/architecture.md and exit")
    args = ap.parse_args(argv)
    if args.docs:
        update_docs(json.loads(args.out.read_text()))
        return
    figures = measure(args.root.resolve())
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**old, args.label: figures}, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if not k.endswith(("_list", "_modules"))}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
