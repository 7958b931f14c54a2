"""The import rules of docs/architecture.md, checked on every import in the tree (nested ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = {"lxmert", "analysis", "app", "training", "benchmarks", "scripts", "tests"}
MAY_IMPORT = {
    "lxmert": {"lxmert"},
    "analysis": {"analysis", "lxmert"},
    "app": {"app", "analysis", "lxmert"},
    "training": {"training", "lxmert"},
    # On top, beside app/: measurements and helpers that may use the rest but never the Streamlit app
    # (extraction_drift builds the tests' random-weight BUTD detector).
    "benchmarks": {"benchmarks", "training", "analysis", "lxmert", "tests"},
    "scripts": {"scripts", "training", "analysis", "lxmert"},
}
# The commands at training/'s root: each imports libraries, never another command.
COMMANDS = {p.stem for p in (ROOT / "training").glob("*.py") if p.stem != "__init__"}


def imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports; relative imports resolved against its package."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names |= {f"{module}.{alias.name}" for alias in node.names} | {module}
    return {n for n in names if n.split(".")[0] in OURS}


def test_each_package_imports_only_what_the_architecture_allows():
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in sorted(imports(path)):
                if name.split(".")[0] not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_no_command_imports_another_command():
    wrong = []
    for path in sorted((ROOT / "training").rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        for name in sorted(imports(path)):
            parts = name.split(".")
            if len(parts) > 1 and parts[0] == "training" and parts[1] in COMMANDS:
                if where != f"training/{parts[1]}.py":
                    wrong.append(f"{where} imports {name}")
    assert not wrong, "\n".join(wrong)


def command_statements(name: str) -> list[ast.stmt]:
    """The top-level statements of the command ``training/<name>.py``."""
    return ast.parse((ROOT / "training" / f"{name}.py").read_text(encoding="utf-8")).body


def is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"


def test_commands_hold_no_logic():
    # A command is its docstring, its imports and the ``__main__`` call: what it runs lives in a library.
    wrong = []
    for name in sorted(COMMANDS):
        for node in command_statements(name):
            docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            if not (docstring or is_main_guard(node) or isinstance(node, ast.Import | ast.ImportFrom)):
                wrong.append(f"training/{name}.py:{node.lineno} {type(node).__name__}")
    assert not wrong, "\n".join(wrong)


def test_every_command_runs_its_main_through_run_cli():
    # One way to end a command: an unreadable file is a one-line message on stderr, never a traceback.
    runs = {
        name: [ast.unparse(s) for node in command_statements(name) if is_main_guard(node) for s in node.body]
        for name in COMMANDS
    }
    wrong = {
        f"training/{name}.py": calls for name, calls in sorted(runs.items()) if calls != ["run_cli(main)"]
    }
    assert not wrong, wrong
