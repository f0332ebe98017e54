"""Which way the plugin's imports point: the rules of issue 18 ("imports one way") and no cycle.

    python scripts/check_import_graph.py

Reads every module of ``gaussiansr_plugin`` with ``ast`` (imports inside functions included,
nothing is imported) and prints each forbidden edge and each import cycle; exits 1 if there is
any. Forbidden: a core module (``archs``, ``data``, ``models``, ``render``, ``utils``,
``visual``) importing a command package (``inference``, ``benchmark``, ``export``, ``tools``,
``cli``), and
``inference`` importing ``tools``.
"""
import ast
import sys
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / 'gaussiansr_plugin'
CORE = ('archs', 'data', 'models', 'render', 'utils', 'visual')
COMMANDS = ('inference', 'benchmark', 'export', 'tools', 'cli')


def module_files() -> Dict[str, Path]:
    """{dotted module name: file}; a package is named by its ``__init__.py``."""
    files = {}
    for path in PACKAGE.rglob('*.py'):
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        files['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return files


def imports_of(name: str, path: Path, files: Dict[str, Path]) -> Set[str]:
    """The plugin modules ``name`` imports (the nearest existing module of each imported name)."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(parts + ([node.module] if node.module else []))
            targets = [base] + [f'{base}.{alias.name}' for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in files and '.' in target:
                target = target.rpartition('.')[0]
            if target in files and target != name:
                found.add(target)
    return found


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    result: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in graph:
        if v not in index:
            visit(v)
    return result


def main() -> int:
    files = module_files()
    graph = {name: imports_of(name, path, files) for name, path in files.items()}

    def part(name: str) -> str:
        return name.split('.')[1] if '.' in name else ''

    forbidden = sorted(f'{m} -> {d}' for m, deps in graph.items() for d in deps
                       if (part(m) in CORE and part(d) in COMMANDS) or (part(m) == 'inference' and part(d) == 'tools'))
    found = cycles(graph)
    print(f'{len(graph)} modules; forbidden edges: {", ".join(forbidden) or "none"}; '
          f'cycles: {"; ".join(" <-> ".join(c) for c in found) or "none"}')
    return 1 if forbidden or found else 0


if __name__ == '__main__':
    sys.exit(main())
