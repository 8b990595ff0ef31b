"""Name, check and load the task callable (``task.fn``).

A reference is ``package.module:function`` (or ``package.module.function``), or
``file:/path/script.py:function`` for a function defined in a script. Checking a
reference does not import it, so planning never pays for torch.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Callable
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from sweeper.errors import TaskImportError, closest

__all__ = ["check", "load", "module_of", "module_source", "ref_for"]


def _split(ref: str) -> tuple[str, str]:
    if ref.startswith("file:"):
        path, _, attr = ref[len("file:"):].rpartition(":")
        return f"file:{path}", attr
    if ":" in ref:
        mod, _, attr = ref.partition(":")
        return mod, attr
    mod, _, attr = ref.rpartition(".")
    return mod, attr


def module_of(ref: str) -> str | None:
    """The importable module name of a reference (None for a script file)."""
    mod, _ = _split(ref)
    return None if mod.startswith("file:") else mod


def ref_for(fn: Callable[..., Any]) -> str:
    """The reference that loads ``fn`` again in another process."""
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", getattr(fn, "__name__", ""))
    if module == "__main__":
        main_file = getattr(sys.modules["__main__"], "__file__", None)
        if main_file is None:
            raise TaskImportError(
                f"task function {name!r} lives in an interactive __main__; move it to a "
                "module and set task.fn=module:function"
            )
        return f"file:{Path(main_file).resolve()}:{name}"
    return f"{module}:{name}"


def _bad(ref: str, why: str) -> TaskImportError:
    return TaskImportError(
        f"task.fn={ref!r} cannot be imported: {why}; set task.fn to an importable "
        "callable such as mypkg.train:main"
    )


def _source_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def module_source(mod: str) -> str | None:
    """The source of module ``mod`` (None for a compiled one), found without running any
    package's ``__init__``: ``find_spec("pkg.mod")`` imports ``pkg`` first, and a user's
    package often imports torch there. The top-level name is looked up as ``import`` would
    (every finder, nothing executed); each further part is looked for on its parent's
    ``submodule_search_locations`` by the path finder alone. A name that walk cannot find
    (a package that extends its ``__path__`` at import) falls back to the real lookup.

    >>> "def closest" in module_source("sweeper.errors")
    True
    """
    parts = mod.split(".")
    spec = importlib.util.find_spec(parts[0])
    for i in range(1, len(parts)):
        locations = spec.submodule_search_locations if spec is not None else None
        spec = PathFinder.find_spec(".".join(parts[:i + 1]), locations) if locations else None
        if spec is None:
            spec = importlib.util.find_spec(mod)
            break
    if spec is None:
        raise ModuleNotFoundError(f"no module named {mod!r}")
    origin = spec.origin
    return Path(origin).read_text() if origin and origin.endswith(".py") else None


def check(ref: str) -> None:
    """Raise TaskImportError unless ``ref`` names a top-level callable, without importing it."""
    if not isinstance(ref, str) or not ref.strip():
        raise _bad(str(ref), "it is empty")
    mod, attr = _split(ref)
    if not attr:
        raise _bad(ref, "it names no function; write module:function")
    if mod.startswith("file:"):
        path = Path(mod[len("file:"):])
        if not path.is_file():
            raise _bad(ref, f"{path} does not exist")
        source: str | None = path.read_text()
    else:
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            source = module_source(mod)
        except ModuleNotFoundError:
            raise _bad(ref, f"no module named {mod!r}") from None
        except Exception as ex:  # the fallback ran a package's __init__, which failed
            raise _bad(ref, f"{type(ex).__name__}: {ex}") from None
    if source is None:
        return
    try:
        names = _source_names(source)
    except SyntaxError as ex:
        raise _bad(ref, f"the module has a syntax error at line {ex.lineno}") from None
    top = attr.split(".")[0]
    if top not in names and "*" not in names:
        raise _bad(ref, f"the module defines no {top!r}{closest(top, names)}")


def load(ref: str) -> Callable[..., Any]:
    """Import and return the callable."""
    mod, attr = _split(ref)
    if mod.startswith("file:"):
        path = Path(mod[len("file:"):])
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))  # as `python app.py` does: its siblings import
        spec = importlib.util.spec_from_file_location("__sweeper_task__", path)
        if spec is None or spec.loader is None:
            raise _bad(ref, f"{path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules["__sweeper_task__"] = module
        spec.loader.exec_module(module)
    else:
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        module = importlib.import_module(mod)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise _bad(ref, f"{attr!r} is a {type(obj).__name__}, not a function")
    return obj  # type: ignore[no-any-return,unused-ignore]
