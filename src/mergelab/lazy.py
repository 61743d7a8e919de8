"""Deferred imports of heavy modules: ``from mergelab.lazy import torch`` in every module that
parsing the workflow imports (config, methods, checkpoints, io, ...)."""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """``name``'s module, imported on its first attribute access (already imported: itself).

    Why: parsing the workflow imports the config and method modules, which must not pay
    torch's import (seconds) on every ``snakemake`` call (docs/troubleshooting.md)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(f"No module named '{name}'", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


#: torch, executed on its first attribute access (tests/test_parse_imports.py)
torch = lazy_module("torch")
