"""Deterministic local fixtures for the CPU smoke configs (config/smoke/, docs/paper_scale.md):

* small image datasets of paper tasks in the formats of their hub copies (so the paper
  loader, ``mergelab.data.paper``, reads them exactly as it reads the real data):
  ``MNIST`` as parquet files per split with the ``ylecun/mnist`` columns (``image``,
  ``label``), ``PCAM`` as a saved ``DatasetDict`` with the ``1aurent/PatchCamelyon``
  columns and splits (boolean ``label``; ``train``/``valid``/``test``), ``RenderedSST2``
  as a cloned hub repository (``data/<split>-00000-of-00001.parquet``);
* a randomly initialised Hugging Face ``CLIPModel`` in the format of
  ``openai/clip-vit-base-patch32`` (same config, ``save_pretrained`` weights, CLIP BPE
  tokenizer files, image-processor config), with no download: the tokenizer's
  ``vocab.json`` / ``merges.txt`` are written from the BPE table open_clip ships (the
  same OpenAI CLIP vocabulary).

Images are class-dependent colour patterns plus seeded noise, 32x32 PNGs: a few KB per
task. Everything is a function of the seed, so the fixtures are reproducible bit for bit
(PNG encoding aside).

    python -m mergelab.data.fixtures smoke --out data/smoke/fixtures
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .prepare import png_bytes

#: task -> (format, class count, split sizes); label kinds follow the hub copies
SMOKE_TASKS = {
    "MNIST": ("parquet", 10, {"train": 30, "test": 10}),
    "PCAM": ("saved_datasetdict", 2, {"train": 24, "valid": 8, "test": 8}),
    "RenderedSST2": ("hub_repo_parquet", 2, {"train": 24, "validation": 8, "test": 8}),
}


def class_images(n: int, n_classes: int, seed: int, size: int = 32) -> tuple[list[bytes], list[int]]:
    """``n`` PNG images (labels cycling through the classes, then shuffled): each class has its
    own colour and stripe frequency, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % n_classes).tolist()
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = []
    for c in labels:
        colour = np.array([(37 * c) % 256, (91 * c + 60) % 256, (53 * c + 120) % 256], float)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (c + 1) * (xx + 0.5 * yy))
        img = colour[None, None, :] * stripes[..., None] + rng.normal(0, 20, (size, size, 3))
        imgs.append(png_bytes(np.clip(img, 0, 255).astype(np.uint8)))
    return imgs, labels


def write_task(task: str, out_dir: str | Path, seed: int = 0) -> Path:
    """One smoke task under ``out_dir/<task>`` in its hub format; returns that folder."""
    import datasets

    if task not in SMOKE_TASKS:
        raise ValueError(f"no smoke fixture for task '{task}' (have {', '.join(SMOKE_TASKS)})")
    fmt, n_classes, sizes = SMOKE_TASKS[task]
    root = Path(out_dir) / task
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    splits = {}
    for i, (split, n) in enumerate(sizes.items()):
        imgs, labels = class_images(n, n_classes, seed=seed * 1000 + 17 * i + len(task))
        if task == "PCAM":  # the hub copy's label is a bool
            feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("bool")})
            labels = [bool(x) for x in labels]
        elif task == "MNIST":
            feats = datasets.Features({"image": datasets.Image(),
                                       "label": datasets.ClassLabel(names=[str(d) for d in range(10)])})
        else:
            feats = datasets.Features({"image": datasets.Image(),
                                       "label": datasets.ClassLabel(names=["negative", "positive"])})
        splits[split] = datasets.Dataset.from_dict(
            {"image": [{"bytes": b, "path": f"{split}_{j}.png"} for j, b in enumerate(imgs)],
             "label": labels}, features=feats)
    if fmt == "saved_datasetdict":
        datasets.DatasetDict(splits).save_to_disk(str(root))
    elif fmt == "parquet":
        for split, ds in splits.items():
            ds.to_parquet(str(root / f"{split}.parquet"))
    else:
        (root / "data").mkdir()
        for split, ds in splits.items():
            ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
        (root / "README.md").write_text(f"Smoke fixture in the layout of the hub repository of {task}.\n")
    return root


# ----------------------------------------------------------------------------- HF CLIP


def write_clip_tokenizer(out_dir: str | Path) -> None:
    """The OpenAI CLIP BPE tokenizer in Hugging Face format (vocab.json, merges.txt and the
    tokenizer configs), built from open_clip's bundled BPE table: token ids equal open_clip's."""
    import open_clip
    from transformers import CLIPTokenizer

    simple = open_clip.SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(k, k): v for k, v in simple.encoder.items()}
    merges = [" ".join(pair) for pair, _ in sorted(simple.bpe_ranks.items(), key=lambda kv: kv[1])]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".tokenizer_src"
    tmp.mkdir(exist_ok=True)
    try:
        (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        tok = CLIPTokenizer(str(tmp / "vocab.json"), str(tmp / "merges.txt"),
                            pad_token="<|endoftext|>", model_max_length=77)
        tok.save_pretrained(str(out_dir))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_random_hf_clip(out_dir: str | Path, seed: int = 0, **config_overrides) -> Path:
    """A randomly initialised ``CLIPModel`` with the configuration of
    ``openai/clip-vit-base-patch32`` (transformers' CLIPConfig defaults are that model's),
    saved with ``save_pretrained`` plus its tokenizer and image-processor files.
    ``config_overrides`` (``text_config``, ``vision_config``, ``projection_dim``) make
    smaller variants for unit tests."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(**config_overrides)).eval()
    model.save_pretrained(str(out_dir))
    write_clip_tokenizer(out_dir)
    CLIPImageProcessor(crop_size={"height": model.config.vision_config.image_size,
                                  "width": model.config.vision_config.image_size},
                       size={"shortest_edge": model.config.vision_config.image_size}
                       ).save_pretrained(str(out_dir))
    return out_dir


def write_smoke_fixtures(out_dir: str | Path, seed: int = 0, hf_model: bool = True,
                         blocks: int | None = None) -> dict[str, str]:
    """Every fixture the smoke configs name, under ``out_dir``: the tasks and ``hf_clip_vit_b32``.
    ``blocks`` cuts both towers of the HF model to that many transformer layers (the
    ``ViT-B-32-2blocks`` runs of tests/test_smoke.py); None keeps ViT-B/32's 12."""
    out_dir = Path(out_dir)
    written = {t: str(write_task(t, out_dir, seed)) for t in SMOKE_TASKS}
    if hf_model:
        hf = out_dir / "hf_clip_vit_b32"
        if hf.exists():
            shutil.rmtree(hf)
        depth = {} if blocks is None else {
            "vision_config": {"num_hidden_layers": blocks}, "text_config": {"num_hidden_layers": blocks}}
        written["hf_clip_vit_b32"] = str(write_random_hf_clip(hf, seed, **depth))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mergelab.data.fixtures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("smoke", help="write the fixtures of config/smoke/*.yaml")
    s.add_argument("--out", default="data/smoke/fixtures")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-hf-model", action="store_true",
                   help="skip the random HF CLIPModel (only the LoRA smoke config needs it)")
    s.add_argument("--blocks", type=int, default=None,
                   help="transformer layers per tower of the HF model (default: ViT-B/32's 12)")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    for name, path in write_smoke_fixtures(a.out, a.seed, not a.no_hf_model, a.blocks).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
