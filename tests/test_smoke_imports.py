"""End to end: task vectors imported from published-style checkpoints instead of fine-tuning
(data.tasks.<task>.checkpoint -> rule import_checkpoint), on local fixtures built from the
run's own θ0 (the tiny open_clip architecture, randomly initialised):

* digits, full regime: a Hugging Face ``CLIPVisionModel`` directory ("FusionBench"), θ0 given
  as a Hugging Face ``CLIPVisionModelWithProjection`` directory;
* signs, full regime: an open_clip state-dict pickle (task-vectors layout, ``model.`` keys), θ0
  defaulting to the pipeline's own θ0;
* textures, LoRA regime: a peft LoRA adapter directory ("KnOTS").

The other (regime, task) pairs are fine-tuned, so each suite mixes imported and fine-tuned task
vectors. Checked: the imported task vectors equal the known updates, the DAG skips fine-tuning
exactly for the imported pairs, the tables have every method row, the run manifest traces the
imports, and touching a checkpoint reruns its import."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from mergelab.artifacts import job_counts
from test_pipeline import copy_workflow

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CFG = "config/imports.yaml"
R = "results/imports"

pytestmark = pytest.mark.slow

CONFIG = {
    "name": "imports", "seed": 0, "device": "cpu", "results_dir": R, "regimes": ["full", "lora"],
    "data": {"root": "data/imports", "image_size": 32, "mini": {"n_train": 64, "n_test": 32},
             "tasks": {
                 "digits": {"source": "mini", "checkpoint": {
                     "kind": "fusionbench", "source": "ckpt/digits_hf", "pretrained": "ckpt/theta0_hf"}},
                 "signs": {"source": "mini", "checkpoint": {"kind": "open_clip", "source": "ckpt/signs.pt"}},
                 "textures": {"source": "mini", "checkpoint": {"kind": "knots", "source": "ckpt/textures_lora"}}}},
    "model": {"name": "mergelab-tiny", "random_init": True},
    "finetune": {"full": {"epochs": 1, "max_steps": 2, "batch_size": 16, "lr": 1e-4, "warmup_steps": 1},
                 "lora": {"rank": 4, "alpha": 8, "epochs": 1, "max_steps": 2, "batch_size": 16,
                          "lr": 1e-3, "warmup_steps": 1}},
    "suites": {"trio": ["digits", "signs", "textures"]},
    "methods": {"task_arithmetic": {"method": "task_arithmetic"}, "ties": {"method": "ties"},
                "knots": {"method": "knots"}},
    "evaluation": {"batch_size": 128, "alpha_grid": [0.5, 1.0]},
    "analysis": {"enabled": False},
}


def snakemake(wd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(wd),
           "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([SNAKEMAKE, "--cores", "2", *args, "--configfile", CFG], cwd=wd,
                          capture_output=True, text=True, env=env, timeout=1200)
    if proc.returncode != 0:
        logs = "".join(f"\n--- {p}\n{p.read_text()[-2500:]}" for p in sorted((wd / R / "logs").rglob("*.log"))
                       if "Traceback" in p.read_text() or "error" in p.read_text())
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-4000:]}{logs[-6000:]}")
    return proc


def planned(wd: Path, *args: str) -> dict[str, int]:
    return job_counts(snakemake(wd, "-n", "--quiet", "rules", *args).stdout)


def make_fixtures(wd: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Checkpoints = θ0 + known updates; returns the expected task vectors per pair."""
    import peft
    import transformers

    from mergelab import convert
    from mergelab.models import open_clip_config

    theta0 = load_file(wd / R / "pretrained" / "clip.safetensors")
    vis = {k: v for k, v in theta0.items() if k.startswith("visual.")}
    hf_cfg = convert.hf_vision_config_from_open_clip(open_clip_config("mergelab-tiny"))
    hf0 = convert.open_clip_to_hf_vision(vis)
    ck = wd / "ckpt"
    ck.mkdir()
    g = torch.Generator().manual_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # θ0 in HF format (what FusionBench's openai/clip-vit-base-patch32 is to its checkpoints)
        m0 = transformers.CLIPVisionModelWithProjection(hf_cfg)
        m0.load_state_dict(hf0, strict=False)
        m0.save_pretrained(ck / "theta0_hf")
        # "FusionBench": a CLIPVisionModel (no projection) = θ0 + δ
        delta = {k: 0.01 * torch.randn(v.shape, generator=g) for k, v in hf0.items()
                 if k != convert.HF_PROJ}
        m1 = transformers.CLIPVisionModel(hf_cfg)
        own = {k: hf0[k] + delta[k] for k in delta}
        missing, _ = m1.load_state_dict(own, strict=False)
        if [k for k in missing if "position_ids" not in k]:  # transformers >= 5 layout without the prefix
            m1.load_state_dict({k[len(convert.HF_PREFIX):]: v for k, v in own.items()}, strict=False)
        m1.save_pretrained(ck / "digits_hf")
        exp_digits = convert.hf_delta_to_open_clip({**delta, convert.HF_PROJ: torch.zeros_like(hf0[convert.HF_PROJ])})
        # task-vectors style pickle: {'model.visual.*': θ0 + δ2} plus text-tower keys
        delta2 = {k: 0.01 * torch.randn(v.shape, generator=g) for k, v in vis.items()}
        sd = {f"model.{k}": v for k, v in theta0.items()}
        sd.update({f"model.{k}": vis[k] + delta2[k] for k in vis})
        torch.save(sd, ck / "signs.pt")
        # "KnOTS": a peft LoRA adapter (rank 4, alpha 8) on the HF vision tower
        base = transformers.CLIPVisionModel(hf_cfg)
        pm = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                       target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
        exp_textures = {}
        with torch.no_grad():
            params = dict(pm.named_parameters())
            for name, p in params.items():
                if ".lora_B." in name:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))
            for name, a in params.items():
                if ".lora_A." in name:
                    mod = name.split("base_model.model.")[1].split(".lora_A.")[0]
                    key = (mod if mod.startswith(convert.HF_PREFIX) else convert.HF_PREFIX + mod) + ".weight"
                    exp_textures[key] = 2.0 * (params[name.replace(".lora_A.", ".lora_B.")] @ a)
        pm.save_pretrained(ck / "textures_lora")
    return {"full/digits": exp_digits, "full/signs": delta2, "lora/textures": exp_textures}


def test_imported_checkpoints_end_to_end(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / CFG).write_text(yaml.safe_dump(CONFIG, sort_keys=False))

    # θ0 first (the checkpoints below are built from it), then the whole DAG
    snakemake(wd, f"{R}/pretrained/clip.safetensors")
    expected = make_fixtures(wd)
    jobs = planned(wd)
    assert jobs["import_checkpoint"] == 3
    assert jobs["finetune"] == jobs["extract_task_vector"] == 3  # 2 regimes x 3 tasks - 3 imported
    snakemake(wd)

    res = wd / R
    for pair, exp in expected.items():
        regime, task = pair.split("/")
        assert (res / "logs" / "import_checkpoint" / regime / f"{task}.log").exists()
        assert not (res / "finetune" / regime / f"{task}.safetensors").exists()
        tau = load_file(res / "taskvectors" / regime / f"{task}.safetensors")
        assert set(tau) == set(exp), pair
        for k, v in exp.items():
            torch.testing.assert_close(tau[k], v.float(), rtol=1e-5, atol=1e-6, msg=f"{pair} {k}")
    for pair in ("lora/digits", "lora/signs", "full/textures"):
        regime, task = pair.split("/")
        assert (res / "finetune" / regime / f"{task}.safetensors").exists(), pair
    # imported and fine-tuned task vectors have the same keys (they merge together)
    for regime, (imp, own) in {"full": ("digits", "textures"), "lora": ("textures", "signs")}.items():
        with safe_open(str(res / "taskvectors" / regime / f"{imp}.safetensors"), "pt") as a, \
                safe_open(str(res / "taskvectors" / regime / f"{own}.safetensors"), "pt") as b:
            assert set(a.keys()) == set(b.keys()), regime
    with safe_open(str(res / "taskvectors" / "lora" / "textures.safetensors"), "pt") as fh:
        meta = fh.metadata()
    assert meta["kind"] == "lora" and meta["lora_rank"] == "4" and meta["pretrained"].endswith("clip.safetensors")
    for regime, methods in {"full": {"task_arithmetic", "ties"}, "lora": {"task_arithmetic", "ties", "knots"}}.items():
        rows = {r["method"] for r in json.loads((res / "tables" / f"{regime}_trio.json").read_text())["rows"]}
        assert rows == {"zeroshot", "individual", *methods}, rows
    man = json.loads((res / "manifest.json").read_text())
    entry = man["artifacts"][f"{R}/taskvectors/full/digits.safetensors"]
    assert entry["config"]["kind"] == "fusionbench" and entry["config"]["source"] == "ckpt/digits_hf"
    assert f"{R}/finetune/full/digits.safetensors" not in man["artifacts"]
    assert planned(wd) == {}
    # a changed checkpoint file reruns its import (and what depends on it), not fine-tuning
    os.utime(wd / "ckpt" / "signs.pt")
    jobs = planned(wd)
    assert jobs.get("import_checkpoint") == 1 and "finetune" not in jobs, jobs


def test_paper_config_with_imported_checkpoints_dry_run(tmp_path, monkeypatch):
    """The paper configs switch a task to an imported checkpoint with one key; the DAG then
    imports instead of fine-tuning it (hub ids: resolved at run time, not DAG inputs)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_paper_configs import _dry_run, _expected_jobs

    from mergelab.config import load_config
    monkeypatch.chdir(ROOT)
    for name, imports in {
        "vit-b-32_full": {"MNIST": {"kind": "hf", "source": "tanganke/clip-vit-base-patch32_mnist",
                                    "pretrained": "openai/clip-vit-base-patch32"},
                          "DTD": {"kind": "open_clip", "source": "checkpoints/ViT-B-32/DTD/finetuned.safetensors"}},
        "vit-b-32_lora": {"DTD": {"kind": "knots", "source": "hoffman-lab/KnOTS-ViT-B-32_lora_R16_dtd"}},
    }.items():
        raw = yaml.safe_load((ROOT / "config" / "paper" / f"{name}.yaml").read_text())
        for t, ck in imports.items():
            raw["data"]["tasks"][t]["checkpoint"] = ck
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        cfg = load_config(path)
        got, _ = _dry_run(path)
        exp = _expected_jobs(cfg)
        assert exp["import_checkpoint"] == len(imports)
        assert {r: got.get(r, 0) for r in exp} == dict(exp), (name, dict(got))
    # a checkpoint for a regime the config does not run is a config error naming the key
    raw = yaml.safe_load((ROOT / "config" / "paper" / "vit-b-32_full.yaml").read_text())
    raw["data"]["tasks"]["DTD"]["checkpoint"] = {"kind": "lora", "source": "x/y"}
    from mergelab.config import ConfigError, validate_config
    with pytest.raises(ConfigError, match=r"'data\.tasks\.DTD\.checkpoint\.kind'"):
        validate_config(raw)
    raw["data"]["tasks"]["DTD"]["checkpoint"] = {"kind": "zip", "source": "x/y"}
    with pytest.raises(ConfigError, match=r"'data\.tasks\.DTD\.checkpoint\.kind'"):
        validate_config(raw)
