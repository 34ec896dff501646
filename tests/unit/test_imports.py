"""Every module imports the submodules it uses (finding: ``cli.tables`` called
``urllib.request.urlopen`` having imported ``urllib.parse`` only; it worked because another
module happened to import ``urllib.request`` first)."""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def unimported_submodules(source: str) -> set[str]:
    """``package.submodule`` names used as attributes (``urllib.request.urlopen``) that the
    module never imports (``import urllib.request`` or ``from urllib import request``)."""
    tree = ast.parse(source)
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                imported.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    used = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in imported):
            name = f"{node.value.id}.{node.attr}"
            if _is_submodule(name):
                used.add(name)
    return used - imported


@functools.cache
def _is_submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, ValueError):  # not a package; a module without a spec
        return False


def test_the_checker_finds_the_defect_it_is_for() -> None:
    bad = "def tables():\n    import urllib.parse\n    return urllib.request.urlopen('x')\n"
    assert unimported_submodules(bad) == {"urllib.request"}
    good = ("import urllib.parse\nimport urllib.request\n"
            "urllib.request.urlopen(urllib.parse.quote('x'))\n")
    assert unimported_submodules(good) == set()


def test_every_module_imports_the_submodules_it_uses() -> None:
    found = {str(path.relative_to(ROOT)): missing
             for path in sorted((ROOT / "signupflow").rglob("*.py"))
             if (missing := unimported_submodules(path.read_text()))}
    assert not found, f"used without being imported: {found}"
