"""Start-up shims for Ryu 4.34 on current Pythons and eventlet; ``ryu-nat`` needs only the second.

1. ``ryu/app/wsgi.py`` reads ``eventlet.wsgi.ALREADY_HANDLED`` while defining a
   class, and the plain ``ryu-manager`` imports that module at start-up.
   eventlet dropped the name after 0.30.2, and 0.30.2 itself does not import on
   Python 3.11. Ryu uses the value only as a sentinel for websocket responses,
   so any unique object serves. :func:`install` adds the name to
   ``eventlet.wsgi`` when that module is loaded (or at once, if it already is).
   Where eventlet still defines it, nothing changes. ``ryu-nat`` never imports
   ``ryu.app.wsgi`` (the app serves its API itself), so it needs no sentinel.
2. eventlet warns at every import that it is deprecated, in nine lines. Ryu
   cannot run without it, and the README says so once: :func:`install` drops
   that one warning (every other warning stays).

The virtual environments the Makefile builds for Ryu call :func:`install` from
a ``.pth`` file, so the plain ``ryu-manager`` gets both. Neither imports
eventlet.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence

_MODULE = "eventlet.wsgi"
_NAME = "ALREADY_HANDLED"
_DEPRECATION = r"\s*Eventlet is deprecated"


def _add_sentinel(module: types.ModuleType) -> None:
    if not hasattr(module, _NAME):
        setattr(module, _NAME, object())


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then adds the sentinel."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        _add_sentinel(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of ``eventlet.wsgi`` only; every other import passes by."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader)
        return spec


def quiet_eventlet_deprecation() -> None:
    """Drop eventlet's deprecation banner (see the module's docstring); must run before eventlet is imported."""
    warnings.filterwarnings("ignore", message=_DEPRECATION)


def install() -> None:
    """Make ``eventlet.wsgi.ALREADY_HANDLED`` exist whenever eventlet.wsgi is used, and quiet the banner."""
    quiet_eventlet_deprecation()
    loaded = sys.modules.get(_MODULE)
    if loaded is not None:
        _add_sentinel(loaded)
        return
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
