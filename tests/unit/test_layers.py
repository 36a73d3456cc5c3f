"""The import graph of `service/` only points down (../shared/STYLE.md, "Layers").

Every `import` counts, including those inside functions and under `TYPE_CHECKING`: an import that
must run upward means a piece sits in the wrong layer, and hiding it does not move the piece.
`KNOWN_UPWARD` lists the edges that still run up while issue 10 moves the pieces; it may only shrink
(the test fails on an entry that no longer occurs, so a fixed edge is crossed off the list).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"

# From the bottom up. A module belongs to the layer of the longest prefix that names it; it may
# import its own layer and those below. Datasets sit with the contracts: a request's typed filters
# are the dataset's, and the contracts that carry them cannot live above the job kinds.
# `formulas` (which CSV cells a spreadsheet would run) is a pure rule both job kinds' files obey.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "service",
            "service.clock",
            "service.errors",
            "service.config",
            "service.logging",
            "service.formulas",
            "service.echo",
            "service.counters",
            "service.observability.tracing",
        ),
    ),
    # The metric definitions sit with the contracts, not the foundation: they name the event
    # types they count (service/contracts/envelope.py), and every layer above records them.
    ("contracts", ("service.contracts", "service.datasets", "service.observability.metrics")),
    ("jobs", ("service.jobs",)),
    ("clients", ("service.storage", "service.database", "service.outbound", "service.leadership")),
    ("job kinds", ("service.exports", "service.imports")),
    ("edges", ("service.events", "service.api", "service.webhooks", "service.observability")),
    (
        "entry points",
        (
            "service.cli",
            "service.dev",
            "service.devstack",
            "service.embedded_servers",
            "service.demo",
            "service.worker",
            "service.start_steps",
            "service.provisioning",
            "service.specs",
            "service.progress_text",
        ),
    ),
)

# Packages of one layer that must not import each other: each job kind plugs into `jobs` alone.
INDEPENDENT: tuple[frozenset[str], ...] = (frozenset({"service.exports", "service.imports"}),)

# Upward edges, as (importing package or module, imported layer-unit), still to be removed.
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()

# Imports between independent packages, still to be removed (shared pieces to move down).
KNOWN_CROSSING: frozenset[tuple[str, str]] = frozenset()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SERVICE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(module: str, path: Path) -> set[str]:
    """Every `service…` module (or package) named by an import in the file, resolved."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base.pop()
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # `from service.x import y` may name a module y: count the deeper name when it is one.
            for alias in node.names:
                deeper = f"{target}.{alias.name}"
                found.add(deeper if _is_module(deeper) else target)
    return {name for name in found if name == "service" or name.startswith("service.")}


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    root = SERVICE.parent
    return (root / relative).with_suffix(".py").exists() or (
        root / relative / "__init__.py"
    ).exists()


def _unit(module: str) -> tuple[int, str]:
    """The layer index and the prefix that placed the module there."""
    best: tuple[int, str] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[1])
            ):
                best = (index, prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(SERVICE.rglob("*.py")):
        module = _module_name(path)
        graph[module] = _imported(module, path) - {module}
    return graph


def _upward_edges() -> set[tuple[str, str]]:
    edges: set[tuple[str, str]] = set()
    for module, targets in _graph().items():
        own_layer, own_unit = _unit(module)
        for target in targets:
            layer, unit = _unit(target)
            if layer > own_layer:
                edges.add((own_unit, unit))
    return edges


def test_every_module_has_a_layer() -> None:
    for module in _graph():
        _unit(module)


def test_no_import_points_up() -> None:
    upward = _upward_edges()
    new = sorted(upward - KNOWN_UPWARD)
    assert not new, (
        "imports that point up a layer (move the piece down, or the importer up):\n"
        + "\n".join(f"  {a} -> {b}" for a, b in new)
    )
    stale = sorted(KNOWN_UPWARD - upward)
    assert not stale, "fixed edges still listed in KNOWN_UPWARD, remove them:\n" + "\n".join(
        f"  {a} -> {b}" for a, b in stale
    )


def test_job_kinds_do_not_import_each_other() -> None:
    crossing: set[tuple[str, str]] = set()
    for module, targets in _graph().items():
        for group in INDEPENDENT:
            for own in group:
                if module == own or module.startswith(own + "."):
                    crossing |= {
                        (module, t)
                        for t in targets
                        for o in group - {own}
                        if t == o or t.startswith(o + ".")
                    }
    new = sorted(crossing - KNOWN_CROSSING)
    assert not new, "job kinds importing each other (move the shared piece down):\n" + "\n".join(
        f"  {a} -> {b}" for a, b in new
    )
    stale = sorted(KNOWN_CROSSING - crossing)
    assert not stale, "fixed crossings still listed in KNOWN_CROSSING, remove them:\n" + "\n".join(
        f"  {a} -> {b}" for a, b in stale
    )


def test_no_cycle_between_units() -> None:
    """Packages and top-level modules form a DAG (inside one package, modules may mix)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in _graph().items():
        own = _unit(module)[1]
        for target in targets:
            unit = _unit(target)[1]
            if unit != own and (own, unit) not in KNOWN_UPWARD:
                edges[own].add(unit)
    visiting: list[str] = []
    done: set[str] = set()

    def visit(unit: str) -> None:
        if unit in done:
            return
        assert unit not in visiting, "import cycle: " + " -> ".join(
            [*visiting[visiting.index(unit) :], unit]
        )
        visiting.append(unit)
        for target in sorted(edges[unit]):
            visit(target)
        visiting.pop()
        done.add(unit)

    for unit in sorted(edges):
        visit(unit)
