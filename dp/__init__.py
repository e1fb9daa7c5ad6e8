"""Differentially private release of Silver into Gold, through PipelineDP's mechanisms."""

from __future__ import annotations

import importlib.util
import sys


def defer_import(name: str) -> None:
    """Makes `import name` cheap: the module is created now and its code runs at its first attribute
    access (importlib's LazyLoader). Nothing changes for code that uses it, only when it is loaded."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:  # as the import system binds a loaded submodule; `from parent import child` then takes
        setattr(sys.modules[parent], child, module)  # it as it is (asking sys.modules would load it)


# PipelineDP imports scipy.stats when it is imported, for one function (dp_computations.gaussian_delta,
# the delta of a Gaussian noise scale, which none of the project's release paths calls), and that is
# most of a cold `lakehouse run`'s imports for its release (measured: `python -X importtime -c
# "import dp.release"` 1.2-1.6 s -> 0.3 s; finding the module imports scipy itself, ~0.1 s). On Python
# 3.11 a LazyLoader module's first use must not race between threads (made safe in 3.12.3): the
# project uses scipy.stats from no thread at all.
defer_import("scipy.stats")
