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
              basis_path: str | Path | None = None) -> dict[str, Any]:
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
