"""Registry of merge methods: name -> "module:Class" (imported lazily).

Adding a method: write one module with a ``MergeMethod`` subclass (its declared
``parameters`` and ``display_name``, ``methods.base``) and add one line here. A name
that is not in the registry is not available, and asking for it raises a clear error.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .base import ALPHA_GRIDS, MergeContext, MergeMethod, MethodConfigError  # noqa: F401

REGISTRY: dict[str, str] = {
    "weight_averaging": "mergelab.methods.basic:WeightAveraging",
    "task_arithmetic": "mergelab.methods.basic:TaskArithmetic",
    "ties": "mergelab.methods.basic:Ties",
    "tsv_m": "mergelab.methods.tsv:TSVMerge",
    "iso_c": "mergelab.methods.iso:IsoC",
    "iso_cts": "mergelab.methods.iso:IsoCTS",
    "dc_merge": "mergelab.methods.dc_merge:DCMerge",
    "knots": "mergelab.methods.knots:KnOTS",
    "dare": "mergelab.methods.dare:Dare",
    "consensus": "mergelab.methods.consensus:Consensus",
    "wudi": "mergelab.methods.wudi:Wudi",
    "mda": "mergelab.methods.mda:Mda",
    "adamerging": "mergelab.methods.adamerging:AdaMerging",
    "mda_am": "mergelab.methods.mda_am:MdaAM",
}


class UnknownMethodError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def available(regime: str | None = None) -> list[str]:
    """Registered method names (optionally only those supporting ``regime``)."""
    names = sorted(REGISTRY)
    if regime is None:
        return names
    return [n for n in names if regime in get_method(n).regimes]


def get_method(name: str) -> type[MergeMethod]:
    if name not in REGISTRY:
        raise UnknownMethodError(
            f"unknown merge method '{name}'; available: {', '.join(sorted(REGISTRY))}")
    module_name, cls_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def build(name: str, **params: Any) -> MergeMethod:
    return get_method(name)(**params)


def source_files(name: str) -> list[Path]:
    """Source files whose edits must rerun this method's merges: its module and every
    module of this package it imports (transitively), e.g. ``base.py``, ``linalg.py``."""
    if name not in REGISTRY:
        raise UnknownMethodError(f"unknown merge method '{name}'")
    return module_sources(REGISTRY[name].split(":")[0].rsplit(".", 1)[-1])


def module_sources(*modules: str) -> list[Path]:
    """The files of these modules of this package (e.g. "linalg") and of every module of
    this package they import, transitively."""
    import ast
    here = Path(__file__).resolve().parent
    todo = list(modules)
    seen: set[str] = set()
    while todo:
        mod = todo.pop()
        if mod in seen or not (here / f"{mod}.py").exists():
            continue
        seen.add(mod)
        tree = ast.parse((here / f"{mod}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    todo.append(node.module.split(".")[0])
                elif node.level == 1:
                    todo.extend(a.name for a in node.names)
                elif node.module and node.module.startswith("mergelab.methods."):
                    todo.append(node.module.split(".")[2])
    return sorted(here / f"{m}.py" for m in seen)
