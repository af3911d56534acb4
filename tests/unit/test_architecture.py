"""The layer arrows of DESIGN.md section 2, checked on the source (imports only point down)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


FORBIDDEN = {
    # package: prefixes its modules must not import
    "sync": ("app", "PySide6"),
    "app/store": ("app.services", "app.ui", "app.cli", "sync", "PySide6", "requests"),
    "app/security": ("app.store", "app.services", "app.ui", "app.cli", "sync", "PySide6"),
    "app/services": ("app.ui", "app.cli", "PySide6", "requests", "sqlcipher3"),
    "app/synthetic": ("app.store", "app.services", "app.ui", "sync", "PySide6"),
    # The UI reaches the cache and the profile through services only.
    "app/ui": ("app.store", "app.security", "sqlcipher3", "requests", "sync._"),
}


def _matches(name: str, prefix: str) -> bool:
    """`app.store._` forbids private modules only; `sync` forbids the package and below."""
    if prefix.endswith("_"):
        return name.startswith(prefix)
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_downwards(package: str) -> None:
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _files(package)
        for name in _imports(path)
        for prefix in FORBIDDEN[package]
        if _matches(name, prefix)
    ]
    assert offences == []


def test_only_the_store_connection_module_opens_sqlcipher() -> None:
    users = [
        p.relative_to(ROOT).as_posix()
        for pkg in ("app", "sync")
        for p in _files(pkg)
        if "sqlcipher3" in _imports(p)
    ]
    assert users == ["app/store/_connection.py"]


def test_only_the_ui_layer_imports_qt_widgets() -> None:
    users = [
        p.relative_to(ROOT).as_posix()
        for pkg in ("app", "sync")
        for p in _files(pkg)
        if any(n.startswith("PySide6.QtWidgets") for n in _imports(p))
    ]
    assert all(u.startswith(("app/ui/", "app/cli/_gui")) for u in users), users


def test_tls_verification_is_never_switched_off() -> None:
    for pkg in ("app", "sync"):
        for path in _files(pkg):
            text = path.read_text(encoding="utf-8")
            assert "verify=False" not in text and "verify = False" not in text, path
            assert "CERT_NONE" not in text, path


def test_extension_loading_is_never_enabled() -> None:
    for pkg in ("app", "sync"):
        for path in _files(pkg):
            assert "enable_load_extension" not in path.read_text(encoding="utf-8"), path


def test_sql_runs_only_in_the_store() -> None:
    """Services and screens ask the store by method; SQL text stays in app/store."""
    offences = [
        p.relative_to(ROOT).as_posix()
        for p in _files("app")
        if not p.is_relative_to(ROOT / "app" / "store")
        and re.search(r"\bconn\.execute|\.execute\(\s*[\"'](SELECT|INSERT|UPDATE|DELETE)", _text(p))
    ]
    assert offences == []


def test_the_ui_reaches_the_cache_only_through_services() -> None:
    """No `session.store` in app/ui: screens ask services (Session methods included), so a
    closed or locked cache is handled in one place, not by `except Exception` in each screen."""
    offences = [
        p.relative_to(ROOT).as_posix()
        for p in _files("app/ui")
        if re.search(r"\.store\b", _text(p))
    ]
    assert offences == []


def _private_imports(path: Path) -> set[str]:
    """Modules named with a private part (`x._y`), from absolute imports."""
    return {name for name in _imports(path) if any(p.startswith("_") for p in name.split(".")[1:])}


def test_no_package_imports_another_packages_private_modules() -> None:
    """`sync.reference._model` from the CLI is a private name leaking: packages export what
    others may use in `__init__`. A package may use its own private modules."""
    offences = []
    for pkg in ("app", "sync"):
        for path in _files(pkg):
            here = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
            for name in _private_imports(path):
                owner = name.split("._")[0]
                if owner != here and not name.startswith(here + "."):
                    offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offences == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_edges(path: Path, modules: set[str]) -> set[str]:
    """Every module of ours this file imports, at any level: top, in a function, or only for
    type checking (a cycle hidden behind TYPE_CHECKING is still two modules that need each
    other). `from pkg import mod` counts as importing `pkg.mod`."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(_text(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(here)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
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
                    found.append(sorted(component))
    return found


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_in_app_or_sync() -> None:
    """Modules that import each other cannot be read, tested or split alone."""
    paths = {_module_name(p): p for pkg in ("app", "sync") for p in _files(pkg)}
    graph = {name: _module_edges(path, set(paths)) for name, path in paths.items()}
    assert _cycles(graph) == []


def test_test_modules_import_no_other_test_module() -> None:
    """Shared test helpers live in tests/support (fixtures in conftest files): a test module
    imported by another runs its module-level fixtures twice and hides what it shares."""
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _files("tests")
        for name in _imports(path)
        if name.startswith("tests.") and name.rpartition(".")[2].startswith("test_")
    ]
    assert offences == []


MODULE_LINES = 1_200


def test_no_module_grows_past_the_size_budget() -> None:
    """The encounter form reached 1,260 lines holding five jobs (controls, answers,
    validation, drafts, saving) before it was split; past this many lines a module is split
    along its seams before it grows further, not after."""
    offences = [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for pkg in ("app", "sync")
        for path in _files(pkg)
        if (lines := len(_text(path).splitlines())) > MODULE_LINES
    ]
    assert offences == []


# Not use cases: the prewarm imports modules, the sync controller's probe is injected.
_OPS_OUTSIDE_USE_CASES = {"app/ui/main_window.py", "app/ui/sync_worker.py"}


def test_screens_run_background_work_through_use_case_factories() -> None:
    """Issue 10, one way to run UI work: a screen calls a factory in app/ui/use_cases.py and
    chains its callbacks; it builds no `Op` around a closure of its own and never reaches the
    cache itself (`session.on_worker` appears in the factories only)."""
    offences = [
        name
        for p in _files("app/ui")
        if (name := p.relative_to(ROOT).as_posix()) not in ("app/ui/use_cases.py", "app/ui/ops.py")
        and (
            ".on_worker(" in _text(p)
            or (name not in _OPS_OUTSIDE_USE_CASES and re.search(r"\bOp\(", _text(p)))
        )
    ]
    assert offences == []


# Private members the GUI tests may still reach, each with why. Everything else drives and
# reads the window as an officer (and a screen reader) does: tests/support/gui.py finds
# controls by their accessible names.
GUI_TEST_PRIVATE = {
    "session._data_key": "SECURITY.md 30: the key itself leaves memory, which no screen shows",
    '"_still_away"': "the offscreen platform cannot put another application in front",
}


def test_gui_tests_reach_no_private_member_of_the_app() -> None:
    reach = re.compile(r"\b(?!self\b)([A-Za-z_]\w*)\.(_[a-z]\w*)|setattr\([^,]+,\s*(\"_[a-z]\w*\")")
    offences = []
    for path in sorted((ROOT / "tests" / "gui").glob("*.py")):
        for number, line in enumerate(_text(path).splitlines(), start=1):
            if line.lstrip().startswith(("import ", "from ", "#")):
                continue
            for match in reach.finditer(line):
                found = match.group(3) or f"{match.group(1)}.{match.group(2)}"
                if found not in GUI_TEST_PRIVATE:
                    offences.append(f"{path.relative_to(ROOT)}:{number}: {found}")
    assert offences == []
