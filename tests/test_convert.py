"""open_clip <-> Hugging Face CLIP vision conversion, on randomly initialised real architectures."""
from __future__ import annotations

import logging

import pytest
import torch

open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")

from mergelab.convert import (ConversionError, hf_delta_to_open_clip,  # noqa: E402
                              hf_key_to_open_clip, hf_vision_config_from_open_clip,
                              hf_vision_to_open_clip, open_clip_delta_to_hf, open_clip_key_to_hf,
                              open_clip_to_hf_vision)

TINY_TEXT = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}


def tiny_cfg(quick_gelu: bool) -> dict:
    return {"embed_dim": 24, "quick_gelu": quick_gelu,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 16}}


def visual_sd(model) -> dict[str, torch.Tensor]:
    return {f"visual.{k}": v for k, v in model.visual.state_dict().items()}


def randomize_(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    """Every parameter random (LayerNorm gains/biases too, so a swapped key shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            gain = 1.0 if (p.ndim == 1 and name.endswith("weight")) else 0.0  # LayerNorm gains near 1
            p.copy_(gain + torch.randn(p.shape, generator=g) * std)


def hf_model_uninitialised(cfg):
    """A HF vision tower without the (slow) random init: built on the meta device,
    storage allocated, only the ``position_ids`` buffer filled; the caller loads every weight."""
    with torch.device("meta"):
        model = transformers.CLIPVisionModelWithProjection(cfg)
    model = model.to_empty(device="cpu").eval()
    emb = model.vision_model.embeddings
    emb.position_ids.copy_(torch.arange(emb.position_ids.shape[-1]).expand(1, -1))
    return model


def hf_model(cfg):
    return transformers.CLIPVisionModelWithProjection(cfg).eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def assert_same_dict(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_tiny_both_ways(quick_gelu):
    cfg = tiny_cfg(quick_gelu)
    oc = open_clip.CLIP(cfg["embed_dim"], cfg["vision_cfg"], TINY_TEXT, quick_gelu=quick_gelu).eval()
    randomize_(oc.visual, seed=1)
    hcfg = hf_vision_config_from_open_clip(cfg)
    assert hcfg.hidden_act == ("quick_gelu" if quick_gelu else "gelu")
    assert hcfg.num_attention_heads == 4 and hcfg.intermediate_size == 256
    assert hcfg.layer_norm_eps == 1e-5 and hcfg.projection_dim == 24

    # open_clip -> HF: strict load, same features, exact round trip
    sd = visual_sd(oc)
    hf = hf_model(hcfg)
    hf.load_state_dict(open_clip_to_hf_vision(sd), strict=True)
    assert sum(p.numel() for p in hf.parameters()) == sum(p.numel() for p in oc.visual.parameters())
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = oc.encode_image(x)
        b = hf(pixel_values=x).image_embeds
    assert rel_err(b, a) < 1e-5
    assert_same_dict(hf_vision_to_open_clip(open_clip_to_hf_vision(sd)), sd)

    # HF -> open_clip: a differently randomised HF model drives the open_clip model
    hf2 = hf_model(hcfg)
    randomize_(hf2, seed=2)
    hsd = dict(hf2.state_dict())
    hsd.pop("vision_model.embeddings.position_ids", None)
    oc.visual.load_state_dict({k[len("visual."):]: v for k, v in hf_vision_to_open_clip(hsd).items()},
                              strict=True)
    with torch.no_grad():
        assert rel_err(oc.encode_image(x), hf2(pixel_values=x).image_embeds) < 1e-5
    assert_same_dict(open_clip_to_hf_vision(hf_vision_to_open_clip(hsd)), hsd)


def test_vit_b_32_real_architecture():
    """The real ViT-B-32 (random init, OpenAI's quick_gelu): round trip, features, sizes."""
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(0)
    oc = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True).eval()
    cfg = open_clip.get_model_config("ViT-B-32-quickgelu")
    hcfg = hf_vision_config_from_open_clip(cfg)
    assert (hcfg.hidden_size, hcfg.num_hidden_layers, hcfg.num_attention_heads, hcfg.patch_size,
            hcfg.image_size, hcfg.intermediate_size, hcfg.projection_dim, hcfg.hidden_act) == \
        (768, 12, 12, 32, 224, 3072, 512, "quick_gelu")
    # the plain config + an explicit override gives the same architecture
    assert hf_vision_config_from_open_clip(open_clip.get_model_config("ViT-B-32"),
                                           quick_gelu=True).hidden_act == "quick_gelu"
    assert hf_vision_config_from_open_clip(open_clip.get_model_config("ViT-B-32")).hidden_act == "gelu"

    hf = hf_model_uninitialised(hcfg)  # every weight is loaded below
    n_hf = sum(p.numel() for p in hf.parameters())
    assert n_hf == sum(p.numel() for p in oc.visual.parameters()) == 87_849_216

    sd = visual_sd(oc)
    converted = open_clip_to_hf_vision(sd)
    hf.load_state_dict(converted, strict=True)
    assert_same_dict(hf_vision_to_open_clip(converted), sd)
    hsd = {k: v for k, v in hf.state_dict().items() if "position_ids" not in k}
    assert_same_dict(open_clip_to_hf_vision(hf_vision_to_open_clip(hsd)), hsd)

    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = oc.encode_image(x)
        b = hf(pixel_values=x).image_embeds
    assert a.shape == b.shape == (1, 512)
    assert rel_err(b, a) < 1e-5


@pytest.fixture(scope="module")
def tiny_sd():
    cfg = tiny_cfg(True)
    oc = open_clip.CLIP(cfg["embed_dim"], cfg["vision_cfg"], TINY_TEXT, quick_gelu=True)
    randomize_(oc.visual, seed=3)
    return visual_sd(oc)


def test_missing_and_unexpected_keys_are_named(tiny_sd):
    sd = dict(tiny_sd)
    del sd["visual.transformer.resblocks.1.ln_2.bias"]
    with pytest.raises(ConversionError, match=r"missing key 'visual\.transformer\.resblocks\.1\.ln_2\.bias'|"
                                              r"missing key 'transformer\.resblocks\.1\.ln_2\.bias'"):
        open_clip_to_hf_vision(sd)
    sd = dict(tiny_sd, **{"visual.attn_pool.query": torch.zeros(3)})
    with pytest.raises(ConversionError, match="unexpected key 'attn_pool.query'"):
        open_clip_to_hf_vision(sd)
    # keys outside the prefix (text tower) are ignored
    assert open_clip_to_hf_vision({**tiny_sd, "token_embedding.weight": torch.zeros(2, 2)}).keys() == \
        open_clip_to_hf_vision(tiny_sd).keys()

    hsd = open_clip_to_hf_vision(tiny_sd)
    del hsd["vision_model.encoder.layers.0.self_attn.k_proj.bias"]
    with pytest.raises(ConversionError, match=r"missing key 'vision_model\.encoder\.layers\.0\.self_attn\.k_proj\.bias'"):
        hf_vision_to_open_clip(hsd)
    hsd = open_clip_to_hf_vision(tiny_sd)
    del hsd["visual_projection.weight"]
    with pytest.raises(ConversionError, match="visual_projection.weight"):
        hf_vision_to_open_clip(hsd)
    hsd = dict(open_clip_to_hf_vision(tiny_sd), **{"vision_model.encoder.layers.0.mlp.fc3.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="unexpected key 'vision_model.encoder.layers.0.mlp.fc3.weight'"):
        hf_vision_to_open_clip(hsd)


def test_delta_mapping_q_only_fills_rows(tiny_sd):
    w = 64
    g = torch.Generator().manual_seed(4)
    dq = torch.randn(w, w, generator=g)
    dv_bias = torch.randn(w, generator=g)
    dout = torch.randn(w, w, generator=g)
    delta = {"vision_model.encoder.layers.1.self_attn.q_proj.weight": dq,
             "vision_model.encoder.layers.1.self_attn.v_proj.bias": dv_bias,
             "vision_model.encoder.layers.0.self_attn.out_proj.weight": dout}
    oc = hf_delta_to_open_clip(delta)
    assert set(oc) == {"visual.transformer.resblocks.1.attn.in_proj_weight",
                       "visual.transformer.resblocks.1.attn.in_proj_bias",
                       "visual.transformer.resblocks.0.attn.out_proj.weight"}
    W = oc["visual.transformer.resblocks.1.attn.in_proj_weight"]
    assert W.shape == (3 * w, w)
    assert torch.equal(W[:w], dq) and not W[w:].any()
    bias = oc["visual.transformer.resblocks.1.attn.in_proj_bias"]
    assert torch.equal(bias[2 * w:], dv_bias) and not bias[:2 * w].any()
    assert torch.equal(oc["visual.transformer.resblocks.0.attn.out_proj.weight"], dout)
    # a dense open_clip in_proj update is the sum of its q/k/v row blocks
    back = open_clip_delta_to_hf(oc)
    assert torch.equal(back["vision_model.encoder.layers.1.self_attn.q_proj.weight"], dq)
    assert not back["vision_model.encoder.layers.1.self_attn.k_proj.weight"].any()

    # full deltas: the delta mapping agrees with the state-dict conversion, both ways
    hsd = open_clip_to_hf_vision(tiny_sd)
    assert_same_dict(hf_delta_to_open_clip(hsd), tiny_sd)
    assert_same_dict(open_clip_delta_to_hf(tiny_sd), hsd)

    with pytest.raises(ConversionError, match="text_model.encoder.layers.0.mlp.fc1.weight"):
        hf_delta_to_open_clip({"text_model.encoder.layers.0.mlp.fc1.weight": dq})


def test_single_key_maps():
    assert hf_key_to_open_clip("vision_model.encoder.layers.3.self_attn.k_proj.weight") == \
        "visual.transformer.resblocks.3.attn.in_proj_weight"
    assert hf_key_to_open_clip("vision_model.encoder.layers.3.mlp.fc2.bias") == \
        "visual.transformer.resblocks.3.mlp.c_proj.bias"
    assert hf_key_to_open_clip("visual_projection.weight") == "visual.proj"
    assert hf_key_to_open_clip("vision_model.pre_layrnorm.weight", prefix="model.visual.") == \
        "model.visual.ln_pre.weight"
    assert open_clip_key_to_hf("visual.transformer.resblocks.0.attn.in_proj_bias") == [
        f"vision_model.encoder.layers.0.self_attn.{q}_proj.bias" for q in "qkv"]
    assert open_clip_key_to_hf("visual.conv1.weight") == ["vision_model.embeddings.patch_embedding.weight"]
    with pytest.raises(ConversionError):
        open_clip_key_to_hf("visual.transformer.resblocks.0.ls_1.gamma")


def test_config_rejects_what_hf_cannot_express():
    with pytest.raises(ValueError, match="ResNet"):
        hf_vision_config_from_open_clip({"embed_dim": 1024, "vision_cfg": {"layers": [3, 4, 6, 3], "width": 64}})
    with pytest.raises(ValueError, match="attentional_pool"):
        hf_vision_config_from_open_clip({"embed_dim": 8, "vision_cfg": {"layers": 2, "width": 64,
                                                                        "attentional_pool": True}})
    with pytest.raises(ValueError, match="head_width"):
        hf_vision_config_from_open_clip({"embed_dim": 8, "vision_cfg": {"layers": 2, "width": 64,
                                                                        "head_width": 48}})
    c = hf_vision_config_from_open_clip({"embed_dim": 768, "vision_cfg": {
        "image_size": 224, "layers": 24, "width": 1024, "patch_size": 14}})
    assert (c.num_attention_heads, c.intermediate_size, c.hidden_act) == (16, 4096, "gelu")
