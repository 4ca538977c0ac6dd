"""Layout figures of the `engine` package (issue 18): how the tree reads, counted from the source.

    python bench/layout.py [ROOT]        # ROOT: the directory holding `engine/` (default: repo)
    python bench/layout.py --list [ROOT] # also name every bare-`Any` parameter and private import

Prints: top-level modules in engine/, the largest module and its lines, import cycles among
engine modules (imports at module level, outside `if TYPE_CHECKING:`; then counting imports
inside functions too, which only hide a cycle), `Any` in annotations,
parameters annotated with a bare `Any`, and private names imported across modules. A static
count (ast only, nothing imported), so it runs on any checkout: compare two commits by pointing
ROOT at an extracted tree (`git archive COMMIT engine | tar -x -C /tmp/base`).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int
    imports: set[str] = field(default_factory=set)  # engine modules imported at module level
    lazy: set[str] = field(default_factory=set)  # ... and inside functions too


def modules(root: Path) -> dict[str, Module]:
    found: dict[str, Module] = {}
    for path in sorted((root / "engine").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        text = path.read_text(encoding="utf-8")
        name = ".".join(parts)
        found[name] = Module(name, path, ast.parse(text), len(text.splitlines()))
    return found


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".")
    if module.path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run on import: module level, inside try/if blocks but not `if TYPE_CHECKING`."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            test = stmt.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
            if name == "TYPE_CHECKING":
                yield from _top_level(stmt.orelse)
                continue
            yield from _top_level(stmt.body)
            yield from _top_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody):
                yield from _top_level(block)
            for handler in stmt.handlers:
                yield from _top_level(handler.body)
        else:
            yield stmt


def _targets(module: Module, stmt: ast.AST, found: dict[str, Module]) -> Iterator[str]:
    names: list[str] = []
    if isinstance(stmt, ast.Import):
        names = [alias.name for alias in stmt.names]
    elif isinstance(stmt, ast.ImportFrom):
        base = _resolve(module, stmt)
        names = [base] + [f"{base}.{alias.name}" for alias in stmt.names]
    for target in names:
        while target and target not in found:
            target = target.rpartition(".")[0]
        if target and target != module.name:
            yield target


def link(found: dict[str, Module]) -> None:
    for module in found.values():
        for stmt in _top_level(module.tree.body):
            module.imports.update(_targets(module, stmt, found))
        module.lazy = set(module.imports)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    module.lazy.update(_targets(module, inner, found))


def cycles(found: dict[str, Module], lazy: bool = False) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan); `lazy`: counting the
    imports made inside functions too (a cycle an import in a function only hides)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(found[v].lazy if lazy else found[v].imports):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(found):
        if v not in index:
            visit(v)
    return out


def _is_any(node: ast.expr | None) -> bool:
    return (isinstance(node, ast.Name) and node.id == "Any") or (
        isinstance(node, ast.Attribute) and node.attr == "Any"
    )


def _annotations(tree: ast.Module) -> Iterator[ast.expr]:
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            yield node.annotation
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _any_count(annotation: ast.expr) -> int:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return 0
    return sum(_is_any(n) for n in ast.walk(annotation) if isinstance(n, ast.expr))


def bare_any_parameters(module: Module) -> Iterator[str]:
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None and _is_any(arg.annotation):
                    yield f"{module.name}:{node.lineno} {node.name}({arg.arg})"


def private_imports(module: Module, found: dict[str, Module]) -> Iterator[str]:
    """`from engine.x import _name` or `x._name` on an imported engine module, x not this one."""
    aliases: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            if not base.startswith("engine"):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in found:
                    aliases[alias.asname or alias.name] = full
                elif (
                    alias.name.startswith("_")
                    and not alias.name.startswith("__")
                    and base != module.name
                ):
                    yield f"{module.name}:{node.lineno} {base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("engine") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(module.tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and aliases[node.value.id] != module.name
        ):
            yield f"{module.name}:{node.lineno} {aliases[node.value.id]}.{node.attr}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).parents[1])
    parser.add_argument("--list", action="store_true", help="name each finding")
    args = parser.parse_args(argv)
    if not (args.root / "engine").is_dir():
        parser.error(f"root {str(args.root)!r}: expected a directory holding engine/")
    found = modules(args.root)
    link(found)
    top = sorted(m.name for m in found.values() if m.path.parent == args.root / "engine")
    top = [m for m in top if m not in ("engine", "engine.__main__")]
    largest = max(found.values(), key=lambda m: m.lines)
    loops = cycles(found)
    hidden = cycles(found, lazy=True)
    any_count = sum(_any_count(a) for m in found.values() for a in _annotations(m.tree))
    bare = [p for m in found.values() for p in bare_any_parameters(m)]
    private = [p for m in found.values() for p in private_imports(m, found)]
    total = sum(m.lines for m in found.values())
    print(f"modules in engine (all packages)  {len(found)} ({total} lines)")
    print(f"top-level modules in engine/      {len(top)}: {', '.join(t[7:] for t in top)}")
    print(f"largest module                    {largest.name} ({largest.lines} lines)")
    print(f"import cycles (module level)      {len(loops)}")
    for loop in loops:
        print(f"    {' <-> '.join(loop)}")
    print(f"import cycles (with lazy imports) {len(hidden)}")
    for loop in hidden:
        print(f"    {' <-> '.join(loop)}")
    print(f"`Any` in annotations              {any_count}")
    print(f"bare-`Any` parameters             {len(bare)}")
    print(f"private cross-module imports      {len(private)}")
    if args.list:
        for line in [*bare, *private]:
            print(f"    {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
