"""The house rules, checked: no import circle between qlib's modules, no module over MAX_MODULE_LINES lines, no
function over MAX_FUNCTION_LINES lines. Imports inside functions count too (a lazy import hides a circle, it does not
remove it)."""
import ast
from pathlib import Path

QLIB = Path(__file__).resolve().parent.parent / "qlib"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(QLIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(QLIB.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The qlib modules ``name`` imports, anywhere in its file (``from . import x`` names module x)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for a in node.names:
                if f"{base}.{a.name}" in known:
                    out.add(f"{base}.{a.name}")
                elif base in known:
                    out.add(base)
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    # the top-level package re-exports the public API: nothing inside qlib imports it, so it closes no circle
    return {n: _imports(n, p, set(mods)) - {"qlib"} for n, p in mods.items() if n != "qlib"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle_and_a_package_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    mods = {"qlib.quant", "qlib.quant.base", "qlib.train", "qlib.experiments"}
    assert _imports("qlib.quant.laq", QLIB / "quant" / "laq.py", mods) == {"qlib.quant.base"}


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_module_is_too_long():
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert not {n: k for n, k in long.items() if k > MAX_MODULE_LINES}, long


def test_no_function_is_too_long():
    long = {}
    for n, p in _modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                    long[f"{n}.{node.name}"] = node.end_lineno - start + 1
    assert not long, long
