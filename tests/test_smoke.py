"""CPU smoke runs of the paper DAG (config/smoke/*.yaml): random initialisation (no download),
a few dozen local images per task in the hub formats (mergelab.data.fixtures), a handful of
fine-tuning steps and every registered merging method of the regime. Each test runs the
whole workflow with Snakemake in a temporary copy of the workflow and checks that every
table holds a row per method (plus zero-shot / individual) with finite accuracies, and that
nothing is left to do afterwards.

The tests run the configs on ``ViT-B-32-2blocks``: ViT-B/32's widths, patch, image size and
key names with 2 transformer blocks per tower instead of 12 (the open_clip θ0 and the HF
fixture alike). The 10 extra blocks repeat the same keys and add nothing to what the DAG's
wiring can get wrong, but cost ~5× the CPU time (docs/paper_scale.md, "Smoke configs");
the configs themselves keep the full architecture."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mergelab import methods as M
from mergelab.artifacts import job_counts
from mergelab.config import load_config, method_regimes

from test_pipeline import ROOT, copy_workflow

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.slow


def snakemake(wd: Path, configfile: str, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "--cores", "2", "--configfile", configfile, *args]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(wd),
           "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        logs = ""
        for log in sorted((wd / "results").rglob("*.log")):
            text = log.read_text(errors="replace")
            if "Traceback" in text or "error" in text.lower():
                logs += f"\n--- {log}\n{text[-3000:]}"
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}{logs[-8000:]}")
    return proc


def planned(wd: Path, configfile: str) -> dict[str, int]:
    return job_counts(snakemake(wd, configfile, "-n", "--quiet", "rules").stdout)


def check_tables(wd: Path, cfg: dict) -> None:
    R = wd / cfg["results_dir"]
    regime = cfg["regimes"][0]
    instances = [m for m in cfg["methods"] if regime in method_regimes(cfg, m)]
    # every registered method that supports the regime has an instance ...
    assert {cfg["methods"][m]["method"] for m in instances} == set(M.available(regime))
    for suite, tasks in cfg["suites"].items():
        table = json.loads((R / "tables" / f"{regime}_{suite}.json").read_text())
        rows = {r["method"]: r for r in table["rows"]}
        # ... and a row in the table, as do the zero-shot and individual references
        assert set(rows) == {"zeroshot", "individual", *instances}, sorted(rows)
        for name, row in rows.items():
            accs = [row[t] for t in tasks]  # test accuracy, %
            assert all(isinstance(a, float) and math.isfinite(a) and 0 <= a <= 100 for a in accs), (name, row)
        md = (R / "tables" / f"{regime}_{suite}.md").read_text()
        assert md.count("\n|") >= len(rows) + 1
        for ext in ("png", "pdf"):
            assert (R / "figures" / f"accuracy_{regime}_{suite}.{ext}").stat().st_size > 0
        for m in instances:
            ev = json.loads((R / "eval" / regime / suite / f"{m}.json").read_text())
            assert ev["alpha"] in ev["alpha_grid"]
    assert (R / "manifest.json").exists()


TEST_MODEL, TEST_BLOCKS = "ViT-B-32-2blocks", 2


def run_smoke(tmp_path: Path, name: str, hf_model: bool) -> tuple[Path, dict, float]:
    from mergelab.data.fixtures import write_smoke_fixtures

    wd = copy_workflow(tmp_path / "wf")
    write_smoke_fixtures(wd / "data" / "smoke" / "fixtures", seed=0, hf_model=hf_model,
                         blocks=TEST_BLOCKS)
    configfile = f"config/smoke/{name}.yaml"
    path = wd / configfile
    raw = yaml.safe_load(path.read_text())
    assert raw["model"]["name"] == "ViT-B-32"
    raw["model"]["name"] = TEST_MODEL
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    t0 = time.time()
    snakemake(wd, configfile)
    seconds = time.time() - t0
    print(f"\nsmoke {name}: snakemake run {seconds:.0f} s")
    return wd, cfg, seconds


def test_smoke_vit_b32_full(tmp_path):
    wd, cfg, _ = run_smoke(tmp_path, "vit-b-32_full", hf_model=False)
    check_tables(wd, cfg)
    R = wd / cfg["results_dir"]
    # θ0 has ViT-B/32's shapes, randomly initialised (no pretraining corpus, no download)
    from safetensors import safe_open
    with safe_open(str(R / "pretrained" / "clip.safetensors"), "pt") as fh:
        assert tuple(fh.get_slice("visual.conv1.weight").get_shape()) == (768, 3, 32, 32)
        assert tuple(fh.get_slice("visual.positional_embedding").get_shape()) == (50, 768)
        assert tuple(fh.get_slice("visual.proj").get_shape()) == (768, 512)
        assert "random init" in fh.metadata()["source"]
        assert sum(1 for k in fh.keys() if k.startswith("visual.transformer.resblocks.")
                   and k.endswith(".attn.in_proj_weight")) == TEST_BLOCKS
    assert not (wd / "data" / "smoke" / "full" / "_corpus").exists()
    # max_steps caps fine-tuning (tasks with fewer batches in their one epoch stop earlier)
    cap = cfg["finetune"]["full"]["max_steps"]
    steps = [json.loads((R / "finetune" / "full" / f"{t}.json").read_text())["steps"]
             for t in cfg["suites"]["trio"]]
    assert all(0 < n <= cap for n in steps) and cap in steps, steps
    assert planned(wd, "config/smoke/vit-b-32_full.yaml") == {}


def test_test_model_is_vit_b32_cut_to_two_blocks():
    """ViT-B-32-2blocks has every key shape of ViT-B-32; it only lacks blocks 2-11."""
    from mergelab.models import create_open_clip
    full = {k: v.shape for k, v in create_open_clip("ViT-B-32").state_dict().items()}
    cut = {k: v.shape for k, v in create_open_clip(TEST_MODEL).state_dict().items()}
    block = re.compile(r"\.resblocks\.(\d+)\.")
    assert cut == {k: s for k, s in full.items()
                   if not (m := block.search(k)) or int(m.group(1)) < TEST_BLOCKS}


def test_smoke_configs_documented():
    doc = (ROOT / "docs" / "paper_scale.md").read_text()
    for p in sorted((ROOT / "config" / "smoke").glob("*.yaml")):
        load_config(p)
        assert f"config/smoke/{p.name}" in doc, p
        assert yaml.safe_load(p.read_text())["model"]["random_init"] is True
