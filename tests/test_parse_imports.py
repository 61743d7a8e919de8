"""Parsing the workflow does not import torch (issue 15: it cost most of every `snakemake`
call's parse). rules/common/config.smk validates the config, reads every method's params,
regimes and sources and the checkpoint kinds; the modules it imports hold torch as a lazy
module (mergelab.lazy) that only a job's first use of it executes. The fork server must
still execute it before forking, or every job would pay the import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["tests/micro/config.yaml", "config/config.yaml", "config/paper/vit-b-32_lora.yaml",
           "config/paper/vit-b-16_full.yaml"]

# What config.smk and its input functions do at parse time, config by config.
PARSE = """
import sys
import yaml
from mergelab import methods as M, shipped
from mergelab.checkpoints import KIND_ALIASES, KIND_REGIME
from mergelab.config import (all_method_instances, alpha_grid, init_source, method_regimes,
                             validate_config)
for path in sys.argv[1:]:
    cfg = validate_config(yaml.safe_load(open(path)))
    for inst, spec in all_method_instances(cfg).items():
        method_regimes(cfg, inst), alpha_grid(cfg, inst), init_source(cfg, inst)
        M.build(spec["method"], **spec.get("params", {})).uses_shared_basis()
        M.get_method(spec["method"]).needs_data, M.source_files(spec["method"])
    M.module_sources("linalg", "base")
    shipped.is_shipped(cfg["model"]["name"], cfg["model"]["pretrained"])
    [KIND_REGIME[k] for k in KIND_ALIASES.values()]
[M.get_method(name).regimes for name in M.available()]
"""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_parsing_the_workflow_does_not_execute_torch():
    out = run_python(PARSE + "print('torch._C' in sys.modules)", *CONFIGS)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", "a module imported at parse time executed torch"


@pytest.mark.slow  # imports torch (seconds)
def test_fork_server_preload_executes_lazy_torch():
    code = ("import sys\nimport mergelab.methods\nfrom mergelab import forkserver\n"
            "assert 'torch._C' not in sys.modules\nforkserver.preload(('torch',))\n"
            "print('torch._C' in sys.modules, sys.modules['torch'].zeros(2).tolist())")
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True [0.0, 0.0]"
