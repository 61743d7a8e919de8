"""Importing published checkpoints, on local fixtures built from random tiny models."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

transformers = pytest.importorskip("transformers")
open_clip = pytest.importorskip("open_clip")
peft = pytest.importorskip("peft")

from mergelab import convert  # noqa: E402
from mergelab.checkpoints import (CheckpointError, import_checkpoint,  # noqa: E402
                                  lora_factors_path, safe_torch_load)
from mergelab.cli import run as cli_run  # noqa: E402

WIDTH, LAYERS = 32, 2
VISION = dict(hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=2,
              image_size=16, patch_size=8, projection_dim=16, hidden_act="quick_gelu")
TEXT = dict(hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            vocab_size=64, max_position_embeddings=8, projection_dim=16, bos_token_id=0,
            eos_token_id=1, pad_token_id=1)
MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")


def vision_cfg(**over):
    return transformers.CLIPVisionConfig(**{**VISION, **over})


def randomize_(module, seed, std=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """A tiny 'openai' CLIPModel (θ0) and a FusionBench-like fine-tuned CLIPVisionModel."""
    root = tmp_path_factory.mktemp("hf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clip = transformers.CLIPModel(transformers.CLIPConfig(
            text_config=TEXT, vision_config=VISION, projection_dim=16)).eval()
    randomize_(clip, seed=0)
    clip.save_pretrained(root / "pretrained")
    ft = transformers.CLIPVisionModel(vision_cfg()).eval()
    base = clip.state_dict()
    g = torch.Generator().manual_seed(1)
    own, ft_sd = {}, {}  # keys as ft holds them / with the 'vision_model.' prefix
    for k in ft.state_dict():
        if "position_ids" in k:
            continue
        hk = k if k.startswith(convert.HF_PREFIX) else convert.HF_PREFIX + k
        ft_sd[hk] = own[k] = base[hk] + 0.01 * torch.randn(base[hk].shape, generator=g)
    ft.load_state_dict(own, strict=False)
    ft.save_pretrained(root / "finetuned")  # transformers-5 layout (keys without 'vision_model.')
    legacy = root / "finetuned_legacy"  # FusionBench layout: 'vision_model.' keys, pytorch_model.bin
    legacy.mkdir()
    torch.save(ft_sd, legacy / "pytorch_model.bin")
    (legacy / "config.json").write_text((root / "finetuned" / "config.json").read_text())
    pt_sd = {k: v for k, v in base.items() if k.startswith("vision_model.") or k == "visual_projection.weight"}
    pt_sd.pop("vision_model.embeddings.position_ids", None)
    return {"root": root, "pt": root / "pretrained", "ft": root / "finetuned", "legacy": legacy,
            "ft_sd": ft_sd, "pt_sd": pt_sd}


@pytest.mark.parametrize("variant", ["ft", "legacy"])
def test_hf_dir_import_full_regime(hf_models, tmp_path, variant):
    out = tmp_path / "tv" / "mnist.safetensors"
    summary = import_checkpoint("fusionbench", str(hf_models[variant]), "mnist", out, str(hf_models["pt"]))
    assert summary["regime"] == "full" and out.exists()
    tau = load_file(out)
    pt_oc = convert.hf_vision_to_open_clip(hf_models["pt_sd"])
    assert set(tau) == set(pt_oc)  # open_clip keys, every image-encoder weight
    ft, pt = hf_models["ft_sd"], hf_models["pt_sd"]
    w = WIDTH
    q = "vision_model.encoder.layers.1.self_attn.{}_proj.weight"
    in_proj = tau["visual.transformer.resblocks.1.attn.in_proj_weight"]
    for i, name in enumerate("qkv"):
        assert torch.equal(in_proj[i * w:(i + 1) * w], ft[q.format(name)] - pt[q.format(name)])
    assert torch.equal(tau["visual.conv1.weight"], ft["vision_model.embeddings.patch_embedding.weight"]
                       - pt["vision_model.embeddings.patch_embedding.weight"])
    assert not tau["visual.proj"].any()  # CLIPVisionModel: projection not fine-tuned
    # θ0 + τ is the fine-tuned model, in open_clip keys
    ft_oc = convert.hf_vision_to_open_clip({**ft, "visual_projection.weight": pt["visual_projection.weight"]})
    for k in tau:
        torch.testing.assert_close(pt_oc[k] + tau[k], ft_oc[k], rtol=0, atol=1e-6)
    with safe_open(str(out), "pt") as fh:
        meta = fh.metadata()
    assert meta["task"] == "mnist" and meta["kind"] == "hf" and meta["regime"] == "full"
    assert "visual_projection" in meta and len(meta["finetuned_sha256"]) == 64


def test_hf_architecture_mismatch_names_file_and_key(hf_models, tmp_path):
    other = transformers.CLIPVisionModel(vision_cfg(num_hidden_layers=3))
    other.save_pretrained(tmp_path / "deeper")
    with pytest.raises(CheckpointError, match=r"deeper/model\.safetensors.*vision_model\.encoder\.layers\.2\."):
        import_checkpoint("hf", str(tmp_path / "deeper"), "x", tmp_path / "x.safetensors", str(hf_models["pt"]))
    wider = transformers.CLIPVisionModel(vision_cfg(intermediate_size=96))
    wider.save_pretrained(tmp_path / "wider")
    with pytest.raises(CheckpointError, match=r"wider/model\.safetensors.*'vision_model\.encoder\.layers\.0\.mlp\.fc1"
                                              r"\.(weight|bias)' has shape \((96, 32|96,)\), the pretrained model .*has \((64, 32|64,)\)"):
        import_checkpoint("hf", str(tmp_path / "wider"), "x", tmp_path / "x.safetensors", str(hf_models["pt"]))
    # same shapes, different activation: only config.json tells
    gelu = tmp_path / "gelu"
    gelu.mkdir()
    (gelu / "model.safetensors").write_bytes((hf_models["ft"] / "model.safetensors").read_bytes())
    cfg = json.loads((hf_models["ft"] / "config.json").read_text())
    (gelu / "config.json").write_text(json.dumps({**cfg, "hidden_act": "gelu"}))
    with pytest.raises(CheckpointError, match="hidden_act"):
        import_checkpoint("hf", str(gelu), "x", tmp_path / "x.safetensors", str(hf_models["pt"]))
    assert not (tmp_path / "x.safetensors").exists()


def _peft_adapter(tmp_path, wrapper: str, rank: int = 4, alpha: int = 8):
    """Save a peft LoRA adapter of a tiny CLIP vision tower; return (dir, {HF key: dense ΔW})."""
    torch.manual_seed(3)
    cls = transformers.CLIPVisionModelWithProjection if wrapper == "with_projection" else transformers.CLIPVisionModel
    model = cls(vision_cfg())
    cfg = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(MODULES), lora_dropout=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = peft.get_peft_model(model, cfg)
    params = dict(pm.named_parameters())
    expected = {}
    with torch.no_grad():
        for name, p in params.items():
            if ".lora_B." in name:
                p.normal_()  # peft initialises B to zero
        for name in params:
            if ".lora_A." in name:
                mod = name.split(".lora_A.")[0].split("base_model.model.")[1]
                a, b = params[name], params[name.replace(".lora_A.", ".lora_B.")]
                key = (mod if mod.startswith("vision_model.") else "vision_model." + mod) + ".weight"
                expected[key] = (alpha / rank) * (b @ a)
    out = tmp_path / f"adapter_{wrapper}"
    pm.save_pretrained(out)
    if wrapper == "adapter_name":  # older peft / raw state dicts keep the adapter name in the key
        sd = load_file(out / "adapter_model.safetensors")
        save_file({k.replace(".weight", ".default.weight"): v for k, v in sd.items()},
                  out / "adapter_model.safetensors")
    return out, expected


@pytest.mark.parametrize("wrapper", ["vision_model", "with_projection", "adapter_name"])
def test_peft_adapter_import(hf_models, tmp_path, wrapper):
    adapter, expected = _peft_adapter(tmp_path, wrapper)
    keys = set(load_file(adapter / "adapter_model.safetensors"))
    if wrapper == "with_projection":
        assert "base_model.model.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight" in keys
    elif wrapper == "vision_model":  # as KnOTS' adapters (peft on the bare vision transformer)
        assert "base_model.model.encoder.layers.0.self_attn.q_proj.lora_A.weight" in keys
    out = tmp_path / "lora" / "dtd.safetensors"
    summary = import_checkpoint("knots", str(adapter), "dtd", out, str(hf_models["pt"]), expected_rank=4)
    assert summary["regime"] == "lora"
    dense = load_file(out)
    assert set(dense) == {f"vision_model.encoder.layers.{i}.self_attn.{m}.weight"
                          for i in range(LAYERS) for m in MODULES} == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(dense[k], v, rtol=1e-6, atol=1e-6)
    factors = load_file(lora_factors_path(out))
    assert lora_factors_path(out).name == "dtd.lora.safetensors"
    for k in dense:
        assert factors[f"{k}.lora_A"].shape == (4, WIDTH) and factors[f"{k}.lora_B"].shape == (WIDTH, 4)
        torch.testing.assert_close(factors[f"{k}.lora_B"] @ factors[f"{k}.lora_A"], dense[k])
    with safe_open(str(out), "pt") as fh:
        meta = fh.metadata()
    assert meta["lora_rank"] == "4" and meta["lora_scale"] == "2" and meta["task"] == "dtd"
    # the q_proj update lands in the first row block of open_clip's fused in_proj
    oc = convert.hf_delta_to_open_clip(dense)
    W = oc["visual.transformer.resblocks.0.attn.in_proj_weight"]
    assert torch.equal(W[:WIDTH], dense["vision_model.encoder.layers.0.self_attn.q_proj.weight"])


def test_peft_wrong_rank_is_an_error(tmp_path):
    adapter, _ = _peft_adapter(tmp_path, "vision_model")
    out = tmp_path / "x.safetensors"
    with pytest.raises(CheckpointError, match=r"adapter_model\.safetensors: LoRA rank mismatch: "
                                              r"expected rank 16, found rank 4"):
        import_checkpoint("lora", str(adapter), "x", out, None, expected_rank=16)
    assert not out.exists() and not lora_factors_path(out).exists()
    # text-tower adapters and non-LoRA keys are refused too
    sd = load_file(adapter / "adapter_model.safetensors")
    save_file({k.replace("base_model.model.", "base_model.model.text_model."): v for k, v in sd.items()},
              adapter / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match="text tower"):
        import_checkpoint("lora", str(adapter), "x", out, None)


class _MarkerOnUnpickle:
    """Unpickling this object calls open(path, 'w'), i.e. creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_with_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "finetuned.pt"
    torch.save({"visual.conv1.weight": torch.zeros(2), "payload": _MarkerOnUnpickle(marker)}, evil)
    with pytest.raises(CheckpointError) as err:
        import_checkpoint("open_clip", str(evil), "x", tmp_path / "x.safetensors", str(evil))
    msg = str(err.value)
    assert str(evil) in msg and "refusing" in msg and "weights_only=False" in msg and "save_file" in msg
    assert not marker.exists()
    # a pickled nn.Module (as the task-vectors checkpoints are) is refused the same way
    module_pt = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module_pt)
    with pytest.raises(CheckpointError, match=r"module\.pt: refusing to load"):
        safe_torch_load(module_pt)
    # control: the payload is live, an unsafe load would have run it
    fh = torch.load(evil, weights_only=False)["payload"]
    fh.close()
    assert marker.exists()


@pytest.fixture(scope="module")
def tiny_open_clip():
    cfg = {"image_size": 16, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16}
    text = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}
    pre = open_clip.CLIP(16, cfg, text, quick_gelu=True)
    ft = open_clip.CLIP(16, cfg, text, quick_gelu=True)
    ft.load_state_dict(pre.state_dict())
    randomize_(ft.visual, seed=5, std=0.01)
    return pre, ft


def test_state_dict_pickles_accepted(tiny_open_clip, tmp_path):
    pre, ft = tiny_open_clip
    # task-vectors ImageEncoder layout: 'model.' + full CLIP keys (text tower included)
    zeroshot = tmp_path / "zeroshot.pt"
    torch.save({f"model.{k}": v for k, v in pre.state_dict().items()}, zeroshot)
    expected = {f"visual.{k}": ft.visual.state_dict()[k] - v for k, v in pre.visual.state_dict().items()}
    layouts = {
        "bare": dict(ft.visual.state_dict()),  # a model.visual state dict
        "visual": {f"visual.{k}": v for k, v in ft.visual.state_dict().items()},
        "wrapped": {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ft.state_dict().items()}},
    }
    for name, obj in layouts.items():
        path = tmp_path / f"{name}.pt"
        torch.save(obj, path)
        out = tmp_path / f"{name}.safetensors"
        import_checkpoint("open_clip", str(path), "x", out, str(zeroshot))
        tau = load_file(out)
        assert set(tau) == set(expected), name
        for k in tau:
            assert torch.equal(tau[k], expected[k]), (name, k)
    # θ0 may also be a Hugging Face CLIP directory: converted to open_clip keys
    hf = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        image_size=16, patch_size=8, projection_dim=16))
    hf.load_state_dict(convert.open_clip_to_hf_vision(
        {f"visual.{k}": v for k, v in pre.visual.state_dict().items()}), strict=False)
    hf.save_pretrained(tmp_path / "hf_pretrained")
    out = tmp_path / "from_hf.safetensors"
    import_checkpoint("pickle", str(tmp_path / "visual.pt"), "x", out, str(tmp_path / "hf_pretrained"))
    tau = load_file(out)
    for k in expected:
        assert torch.equal(tau[k], expected[k]), k
    # the command line, by hand (the rule passes --spec instead)
    out = tmp_path / "cli.safetensors"

    def cli(source):
        return cli_run(["import-checkpoint", "--kind", "open_clip", "--source", source, "--task", "x",
                        "--out", str(out), "--pretrained", str(zeroshot)])
    assert cli(str(tmp_path / "bare.pt")) == 0
    assert set(load_file(out)) == set(expected)
    assert cli(str(tmp_path / "missing.pt")) == 2
    with pytest.raises(SystemExit, match="not both"):
        cli_run(["import-checkpoint", "--spec", '{"kind": "pickle"}', "--kind", "pickle", "--task", "x",
                 "--out", str(out)])
    with pytest.raises(SystemExit, match="unknown checkpoint kind 'nope'"):
        cli_run(["import-checkpoint", "--kind", "nope", "--source", str(tmp_path / "bare.pt"),
                 "--task", "x", "--out", str(out)])


def test_offline_hub_id_error_names_repo_and_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    repo = "tanganke/clip-vit-base-patch32_nosuchtask"
    with pytest.raises(CheckpointError) as err:
        import_checkpoint("hf", repo, "x", tmp_path / "x.safetensors", "openai/clip-vit-base-patch32",
                          cache_dir=cache, offline=True)
    msg = str(err.value)
    assert repo in msg and str(cache) in msg and f"hf download {repo}" in msg
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"hoffman-lab/KnOTS-ViT-B-32_lora_R16_dtd.*offline"):
        import_checkpoint("lora", "hoffman-lab/KnOTS-ViT-B-32_lora_R16_dtd", "dtd",
                          tmp_path / "x.safetensors", None, expected_rank=16, cache_dir=cache)
    with pytest.raises(CheckpointError, match="no such file or directory"):
        import_checkpoint("hf", str(tmp_path / "not" / "there"), "x", tmp_path / "x.safetensors", str(cache))
    with pytest.raises(ValueError, match="unknown checkpoint kind"):
        import_checkpoint("onnx", "a/b", "x", tmp_path / "x.safetensors", None)


def _fake_hub_cache(cache, repo: str, files: dict) -> None:
    """The layout huggingface_hub's cache has after `hf download <repo> --cache-dir <cache>`."""
    commit = "0" * 40
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, src in files.items():
        (snap / name).write_bytes(src.read_bytes())
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


def test_hub_ids_resolve_from_the_cache_offline(hf_models, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf-cache"
    adapter, expected = _peft_adapter(tmp_path, "vision_model")
    repo = "hoffman-lab/KnOTS-ViT-B-32_lora_R16_dtd"
    # a snapshot without the weights does not count as cached
    _fake_hub_cache(cache, repo, {"adapter_config.json": adapter / "adapter_config.json"})
    with pytest.raises(CheckpointError, match=f"{repo}.*{cache}"):
        import_checkpoint("lora", repo, "dtd", tmp_path / "dtd.safetensors", None, cache_dir=cache)
    snap = cache / ("models--" + repo.replace("/", "--")) / "snapshots" / ("0" * 40)
    (snap / "adapter_model.safetensors").write_bytes((adapter / "adapter_model.safetensors").read_bytes())
    pt_repo = "openai/clip-vit-base-patch32"
    _fake_hub_cache(cache, pt_repo, {f: hf_models["pt"] / f for f in ("config.json", "model.safetensors")})
    out = tmp_path / "dtd.safetensors"
    import_checkpoint("lora", repo, "dtd", out, pt_repo, expected_rank=4, cache_dir=cache)
    dense = load_file(out)
    for k, v in expected.items():
        torch.testing.assert_close(dense[k], v, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- θ0 as an open_clip file


def test_hf_and_lora_kinds_accept_the_pipelines_open_clip_theta0(hf_models, tmp_path):
    """The pipeline's θ0 is an open_clip safetensors file (pretrained/clip.safetensors, text
    tower included): kind hf subtracts it in open_clip keys, kind lora checks shapes on it."""
    from mergelab.checkpoints import is_open_clip_file
    pt_oc = convert.hf_vision_to_open_clip(hf_models["pt_sd"])
    theta0 = tmp_path / "clip.safetensors"
    save_file({**{k: v.contiguous() for k, v in pt_oc.items()},
               "token_embedding.weight": torch.zeros(64, WIDTH), "logit_scale": torch.tensor(2.0)}, theta0)
    assert is_open_clip_file(theta0)
    assert not is_open_clip_file(hf_models["pt"] / "model.safetensors")
    assert not is_open_clip_file(hf_models["pt"]) and not is_open_clip_file("owner/repo")
    out = tmp_path / "hf.safetensors"
    import_checkpoint("hf", str(hf_models["ft"]), "mnist", out, str(theta0))
    via_file = load_file(out)
    ref = tmp_path / "ref.safetensors"
    import_checkpoint("hf", str(hf_models["ft"]), "mnist", ref, str(hf_models["pt"]))
    expected = load_file(ref)
    assert set(via_file) == set(expected)
    for k in expected:
        assert torch.equal(via_file[k], expected[k]), k
    assert not via_file["visual.proj"].any()
    adapter, dense = _peft_adapter(tmp_path, "vision_model")
    out = tmp_path / "lora.safetensors"
    import_checkpoint("knots", str(adapter), "dtd", out, str(theta0), expected_rank=4)
    got = load_file(out)
    for k, v in dense.items():
        torch.testing.assert_close(got[k], v.float(), rtol=1e-5, atol=1e-6)
    # a θ0 of another width is refused with the file named
    small = {k: v[..., :8].contiguous() if v.ndim and v.shape[-1] == WIDTH else v.contiguous()
             for k, v in pt_oc.items()}
    bad = tmp_path / "other.safetensors"
    save_file(small, bad)
    with pytest.raises(CheckpointError, match="other.safetensors|another architecture"):
        import_checkpoint("hf", str(hf_models["ft"]), "mnist", tmp_path / "x.safetensors", str(bad))


# --------------------------------------------------------------------------- heads from the HF text tower

HF_TINY = dict(
    text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     max_position_embeddings=77),  # vocab 49408: the real CLIP tokenizer
    vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                       image_size=32, patch_size=16),
    projection_dim=24)


def _task_dir(path, names):
    """A prepared task directory (train/validation/test, image + ClassLabel label)."""
    import datasets
    from PIL import Image
    img = Image.new("RGB", (8, 8))
    ds = datasets.Dataset.from_dict({"image": [img] * len(names), "label": list(range(len(names)))},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "label": datasets.ClassLabel(names=names)}))
    datasets.DatasetDict({"train": ds, "validation": ds, "test": ds}).save_to_disk(str(path))


@pytest.fixture(scope="module")
def hf_clip_dir(tmp_path_factory):
    from mergelab.data.fixtures import write_random_hf_clip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_random_hf_clip(tmp_path_factory.mktemp("hfclip") / "clip", seed=4, **HF_TINY)


def test_generated_tokenizer_matches_open_clip(hf_clip_dir):
    tok = transformers.AutoTokenizer.from_pretrained(hf_clip_dir)
    oc = open_clip.get_tokenizer("ViT-B-32")
    for text in ("a photo of a 7.", 'a centered satellite photo of "annual crop land"!',
                 "a zoomed in photo of a red and white circle 20 kph speed limit traffic sign."):
        ids = oc([text])[0]
        assert tok(text)["input_ids"] == ids[: int((ids != 0).sum())].tolist(), text


def test_hf_text_head_matches_direct_computation(hf_clip_dir, tmp_path):
    """Heads from transformers' CLIPModel text tower + projection: one unit row per class,
    equal to encoding each prompt alone (no padding), taking the EOS state, projecting,
    normalising, averaging and renormalising."""
    from mergelab.engine import Head
    from mergelab.heads import build_head, hf_text_head, load_hf_clip
    model, tok = load_hf_clip(str(hf_clip_dir))
    names = ["annual crop land", "forest", "river"]
    templates = ["a centered satellite photo of {}.", "a photo of the {}, seen from above at noon."]
    head = hf_text_head(model, tok, names, templates, torch.device("cpu"))
    assert tuple(head.weight.shape) == (3, 24)
    torch.testing.assert_close(head.weight.norm(dim=-1), torch.ones(3))
    assert head.logit_scale == pytest.approx(float(model.logit_scale.detach().exp()))
    rows = []
    with torch.no_grad():
        for n in names:
            embs = []
            for t in templates:
                ids = torch.tensor([tok(t.format(n))["input_ids"]])
                assert ids[0, -1] == tok.eos_token_id
                h = model.text_model(input_ids=ids).last_hidden_state[0, -1]
                embs.append(torch.nn.functional.normalize(model.text_projection(h), dim=-1))
            rows.append(torch.nn.functional.normalize(torch.stack(embs).mean(0), dim=-1))
    torch.testing.assert_close(head.weight, torch.stack(rows), rtol=1e-5, atol=1e-6)

    # through build_head (the heads rule), on a prepared task directory
    _task_dir(tmp_path / "task", names)
    out = tmp_path / "head.safetensors"
    model_cfg = {"name": "ViT-B-32", "hf_name": str(hf_clip_dir), "head_text_encoder": "hf"}
    build_head("EuroSAT", {"source": "local", "path": "x"}, tmp_path / "task", model_cfg,
               "unused.safetensors", out, "cpu")
    from mergelab.data.paper import templates_for
    ref = hf_text_head(model, tok, names, templates_for("EuroSAT"), torch.device("cpu"))
    torch.testing.assert_close(Head.load(out).weight, ref.weight)
    with safe_open(str(out), "pt") as fh:
        assert fh.metadata()["text_encoder"] == f"hf:{hf_clip_dir}"


def test_head_text_encoder_config_checks(tmp_path):
    import yaml
    from mergelab.config import ConfigError, validate_config
    from mergelab.heads import build_head
    cfg = yaml.safe_load(open(convert.__file__.replace("src/mergelab/convert.py", "tests/micro/config.yaml")))
    assert validate_config(cfg)["model"]["head_text_encoder"] == "open_clip"  # default: as before
    cfg["model"]["head_text_encoder"] = "hf"
    with pytest.raises(ConfigError, match="'model.head_text_encoder'"):
        validate_config(cfg)
    cfg["model"]["head_text_encoder"] = "bert"
    with pytest.raises(ConfigError, match="'model.head_text_encoder'"):
        validate_config(cfg)
    cfg["model"].update(head_text_encoder="hf", hf_name=str(tmp_path / "nothing_here"))
    validate_config(cfg)
    from mergelab.io import ArtifactError
    _task_dir(tmp_path / "task", ["a", "b"])
    with pytest.raises(ArtifactError, match="model.hf_name"):
        build_head("x", {"source": "local", "path": "x"}, tmp_path / "task", cfg["model"],
                   "unused", tmp_path / "h.safetensors", "cpu")
    cfg["model"].update(random_init=True, pretrained="openai")
    with pytest.raises(ConfigError, match="'model.random_init'"):
        validate_config(cfg)
