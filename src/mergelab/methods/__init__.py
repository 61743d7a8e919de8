"""Registry of merge methods: name -> "module:Class" (imported lazily).

Adding a method: write one module with a ``MergeMethod`` subclass and add one
line here. A name that is not in the registry is not available, and asking for
it raises a clear error.
"""
from __future__ import annotations

import importlib
import importlib.util
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
    """Source files whose edits must rerun this method's merges (its module + base)."""
    module_name = REGISTRY[name].split(":")[0] if name in REGISTRY else None
    if module_name is None:
        raise UnknownMethodError(f"unknown merge method '{name}'")
    mod = importlib.util.find_spec(module_name)
    here = Path(__file__).resolve().parent
    files = [Path(mod.origin).resolve(), here / "base.py"]
    return sorted(set(files))
