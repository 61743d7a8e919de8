"""Run one merge method over the task vectors of one suite and regime."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import methods as M
from .engine import progress
from .io import provenance, save_json, save_tensors
from .methods.base import MergeContext
from .models import pick_device, seed_everything
from .taskvectors import SafetensorsSource


def run_merge(inst: str, spec: Mapping[str, Any], regime: str, suite: str, tasks: Sequence[str],
              tv_paths: Sequence[str | Path], out_tau: str | Path, out_json: str | Path,
              seed: int, lora_rank: int | None = None, device: str = "auto",
              evaluator_args: Mapping[str, Any] | None = None,
              config_subset: Mapping[str, Any] | None = None,
              basis_path: str | Path | None = None,
              init_from: str | Path | None = None) -> dict[str, Any]:
    """``init_from``: the eval JSON of the method instance whose validated α starts the
    coefficients of a method with ``init: from_method`` (MDA AM starts at MDA's α)."""
    seed_everything(seed)
    method = M.build(spec["method"], **spec.get("params", {}))
    if regime not in method.regimes:
        raise ValueError(f"method '{inst}' ({spec['method']}) does not support regime '{regime}'")
    ctx = MergeContext(regime=regime, tasks=list(tasks), seed=seed, lora_rank=lora_rank,
                       device=pick_device(device))
    if method.needs_data:
        if evaluator_args is None:
            raise ValueError(f"method '{inst}' needs data but the merge was given none")
        from .evaluate import Evaluator
        ev = Evaluator(regime, tasks=tasks, **evaluator_args)
        ctx.evaluate = ev.evaluate
        ctx.extras["evaluator"] = ev
    _set_initial_alpha(inst, method, ctx, regime, suite, tasks, init_from)
    if basis_path is not None:
        if not method.uses_shared_basis():
            raise ValueError(f"method '{inst}' ({spec['method']}, params {method.params}) does not "
                             f"read a shared basis, but the merge was given {basis_path}")
        from .basis import BasisSource
        ctx.basis = BasisSource(basis_path, tasks, regime)
    source = SafetensorsSource(tv_paths)
    t0 = time.time()
    tau = method.merge(source, ctx, progress=lambda it: progress(it, desc=f"merge {inst}/{regime}/{suite}"))
    seconds = time.time() - t0
    save_tensors(tau, out_tau, metadata={"method": inst, "regime": regime, "suite": suite})
    info = {"method": inst, "registry_method": spec["method"], "params": method.params,
            "regime": regime, "suite": suite, "tasks": list(tasks), "seconds": seconds,
            "shared_basis": str(basis_path) if basis_path is not None else None,
            "aux": ctx.aux,
            "provenance": provenance(dict(config_subset or {}), seed=seed)}
    save_json(info, out_json)
    return info


def _set_initial_alpha(inst: str, method, ctx: MergeContext, regime: str, suite: str,
                       tasks: Sequence[str], init_from: str | Path | None) -> None:
    """Put the validated α of ``init_method`` (from its eval JSON) in ``ctx.extras['init_alpha']``."""
    from .io import ArtifactError, load_json
    from .methods.adamerging import FROM_METHOD
    wants = method.params.get("init") == FROM_METHOD
    if init_from is None:
        if wants:
            raise ValueError(f"method '{inst}': init: {FROM_METHOD} needs the eval JSON of "
                             f"'{method.params['init_method']}' (--init-from)")
        return
    if not wants:
        raise ValueError(f"method '{inst}' was given --init-from {init_from} but its init is "
                         f"{method.params.get('init')!r}, not '{FROM_METHOD}'")
    d = load_json(init_from)
    source = method.params["init_method"]
    expected = {"method": source, "regime": regime, "suite": suite, "tasks": list(tasks)}
    for key, value in expected.items():
        if d.get(key) != value:
            raise ArtifactError(f"{init_from}: {key} is {d.get(key)!r}, expected {value!r} "
                                f"(the eval of '{source}' on this regime and suite)")
    ctx.extras["init_alpha"] = float(d["alpha"])
    ctx.aux["init_from"] = {"path": str(init_from), "method": source, "alpha": float(d["alpha"])}
