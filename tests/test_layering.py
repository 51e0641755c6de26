"""The library never imports an application: every module of ``eg3d_core`` outside ``eg3d_core.apps`` is imported,
one after the other, in a fresh interpreter, and after each import no ``eg3d_core.apps`` module may be loaded."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import eg3d_core

PACKAGE = Path(eg3d_core.__file__).parent
APPS = "eg3d_core.apps"
# ``python -m eg3d_core`` is the ``eg3d`` command itself: an entry point, not library code.
ENTRY_POINTS = {"eg3d_core.__main__"}

# Imports the modules named in argv in order; prints {module: [apps modules loaded once it was imported]} for the
# first module after whose import any application module was loaded (and stops there), else {}.
CHECKER = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    apps = sorted(m for m in sys.modules if m == "eg3d_core.apps" or m.startswith("eg3d_core.apps."))
    if apps:
        print(json.dumps({name: apps}))
        break
else:
    print("{}")
"""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules() -> list[str]:
    names = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return sorted(n for n in names - ENTRY_POINTS if n != APPS and not n.startswith(APPS + "."))


def apps_loaded_by(modules: list[str]) -> dict[str, list[str]]:
    res = subprocess.run([sys.executable, "-c", CHECKER, *modules], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_walk_finds_the_library_and_leaves_out_the_apps() -> None:
    modules = library_modules()
    for name in ("eg3d_core", "eg3d_core.cameras", "eg3d_core.labels", "eg3d_core.metrics.fid",
                 "eg3d_core.metrics.images", "eg3d_core.checkpoints.mmagic", "eg3d_core.errors"):
        assert name in modules
    assert not [n for n in modules if n.startswith(APPS)] and "eg3d_core.__main__" not in modules


def test_the_checker_sees_an_application_import() -> None:
    """The check itself can fail: importing an application module is reported, naming the module that did it."""
    assert apps_loaded_by(["eg3d_core.cameras", "eg3d_core.apps.datasets"]) == {
        "eg3d_core.apps.datasets": ["eg3d_core.apps", "eg3d_core.apps.datasets"]}


def test_no_library_module_imports_an_application() -> None:
    assert apps_loaded_by(library_modules()) == {}
