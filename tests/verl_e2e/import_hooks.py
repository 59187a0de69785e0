"""``after_import(name, fn)``: run ``fn(module)`` right after ``name`` is first executed, in
this process (a ``sys.meta_path`` finder); at once if it already is. Test support for the
patches of the end-to-end run, which must act in whichever Ray process imports the module."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Callable

_pending: dict[str, list[Callable]] = {}


class _AfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in _pending:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module, hooks = spec.loader.exec_module, _pending.pop(name)

        def exec_and_patch(module):
            exec_module(module)
            for fn in hooks:
                fn(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def after_import(name: str, fn: Callable) -> None:
    if name in sys.modules:
        fn(sys.modules[name])
        return
    _pending.setdefault(name, []).append(fn)
    if not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
