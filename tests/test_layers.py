"""Imports run one way: cloudseam_site (urls, asgi) → stacks → machines_app → accounts.

Read from the source with `ast`, so the check sees imports inside functions too and needs no
Django set-up. A failure names the file, the line and the import that goes against the direction.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cloudseam_site", "stacks", "machines_app")

# Lower layers first; a module may import its own layer and any layer below it.
LAYERS = {
    "base": 0,  # settings helpers, process helpers, security middleware: import no app
    "accounts": 1,
    "api": 2,  # the JSON endpoint helpers every app's API uses
    "machines_app": 3,
    "stacks": 4,
    "site": 5,  # urls, asgi, the OpenAPI document, the CLI: wire the apps together
}
SITE_MODULES = {"cloudseam_site.urls", "cloudseam_site.asgi", "cloudseam_site.openapi", "cloudseam_site.cli",
                "cloudseam_site.settings"}


def layer_of(module: str) -> str | None:
    if module.startswith("cloudseam_site.accounts"):
        return "accounts"
    if module == "cloudseam_site.api":
        return "api"
    if module in SITE_MODULES:
        return "site"
    if module == "cloudseam_site" or module.startswith("cloudseam_site."):
        return "base"
    if module.split(".")[0] in ("stacks", "machines_app"):
        return module.split(".")[0]
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def source_files() -> list[Path]:
    return [p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


def known_module(name: str, modules: set[str]) -> str | None:
    """The longest prefix of `name` that is one of our modules (an imported name is not a module)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def graph() -> dict[str, set[tuple[int, str]]]:
    files = source_files()
    modules = {module_name(p) for p in files}
    edges = {}
    for path in files:
        targets = {(line, known_module(name, modules)) for line, name in imports_of(path)}
        edges[module_name(path)] = {(line, t) for line, t in targets if t and t != module_name(path)}
    return edges


def test_it_finds_the_modules_it_checks():
    modules = set(graph())
    assert {"stacks.services", "machines_app.spec.rules", "cloudseam_site.accounts.roles"} <= modules
    assert layer_of("stacks.runtime.jobs") == "stacks" and layer_of("cloudseam_site.accounts.auth") == "accounts"


def test_it_has_no_import_against_the_layer_direction():
    wrong = []
    for module, targets in graph().items():
        for line, target in targets:
            if LAYERS[layer_of(target)] > LAYERS[layer_of(module)]:
                wrong.append(f"{module} (line {line}) imports {target}: {layer_of(module)} must not depend on "
                             f"{layer_of(target)}")
    assert not wrong, "\n".join(sorted(wrong))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each one an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(group) > 1:
                found.append(sorted(group))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def test_it_finds_a_cycle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_it_has_no_import_cycle_between_modules():
    """A package's `__init__` re-exporting its own modules is not a cycle; anything else is."""
    edges = {}
    for module, targets in graph().items():
        parent = module.rsplit(".", 1)[0]
        edges[module] = {t for _line, t in targets if t != parent}
    assert not cycles(edges), "\n".join(" ↔ ".join(group) for group in cycles(edges))


def test_it_keeps_the_engine_and_the_validator_free_of_django():
    pure = [ROOT / "stacks" / "engine.py", *(ROOT / "machines_app" / "spec").glob("*.py")]
    for path in pure:
        names = [name for _line, name in imports_of(path)]
        assert not [n for n in names if n.split(".")[0] in ("django", "stacks", "channels", "rq")], path
