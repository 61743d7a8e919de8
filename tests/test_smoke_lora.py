"""The LoRA smoke run (config/smoke/vit-b-32_lora.yaml); helpers and the full-fine-tuning run
are in tests/test_smoke.py. A module of its own so that `make test`'s two pytest-xdist
workers run the two smoke runs side by side."""
from __future__ import annotations

import json

import pytest

from test_smoke import TEST_BLOCKS, check_tables, planned, run_smoke

pytestmark = pytest.mark.slow


def test_smoke_vit_b32_lora(tmp_path):
    wd, cfg, _ = run_smoke(tmp_path, "vit-b-32_lora", hf_model=True)
    check_tables(wd, cfg)
    R = wd / cfg["results_dir"]
    from safetensors import safe_open
    with safe_open(str(R / "taskvectors" / "lora" / "MNIST.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    # dense LoRA updates of q/k/v/out of every layer of the 768-wide HF vision tower
    assert len(keys) == 4 * TEST_BLOCKS and all(k.startswith("vision_model.encoder.layers.") for k in keys)
    with safe_open(str(R / "taskvectors" / "lora" / "MNIST.safetensors"), "pt") as fh:
        assert tuple(fh.get_slice(keys[0]).get_shape()) == (768, 768)
    with safe_open(str(R / "heads" / "MNIST.safetensors"), "pt") as fh:
        assert fh.metadata()["text_encoder"].startswith("hf:")
        assert tuple(fh.get_slice("weight").get_shape()) == (10, 512)
    f = json.loads((R / "finetune" / "lora" / "PCAM.json").read_text())
    assert f["steps"] == 3
    assert planned(wd, "config/smoke/vit-b-32_lora.yaml") == {}
