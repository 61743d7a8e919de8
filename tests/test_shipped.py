"""Shipped pretrained weights: the card's sha256 is checked, a missing or altered file is a
clear error naming it, and model.pretrained: <tag> loads them like published weights."""
import json

import pytest
import torch

from mergelab import shipped
from mergelab.config import ConfigError, load_config
from mergelab.io import ArtifactError, load_tensors
from mergelab.models import create_open_clip


@pytest.fixture
def fake_weights_dir(tmp_path, monkeypatch):
    """A weights folder holding one tag made from the tiny model's seeded random init."""
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    torch.manual_seed(0)
    model = create_open_clip("mergelab-tiny")
    from mergelab.io import save_tensors
    src = tmp_path / "src.safetensors"
    save_tensors(dict(model.state_dict()), src)
    metrics = {"steps": 1, "seconds": 0.1, "loss_curve": [[1, 5.0]], "provenance": {"code_version": "t"}}
    shipped.write_card("fake-v0", src, metrics, {"name": "mergelab-tiny"}, {"embed_dim": 128},
                       {"n": 10}, {"epochs": 1}, seed=0)
    return tmp_path, model


def test_card_records_sha256_and_tag_loads(fake_weights_dir):
    folder, model = fake_weights_dir
    card = json.loads((folder / "fake-v0.json").read_text())
    assert card["sha256"] == shipped.sha256_file(folder / "fake-v0.safetensors")
    assert card["loss_curve"] == [[1, 5.0]] and card["model"]["name"] == "mergelab-tiny"
    assert shipped.is_shipped("mergelab-tiny", "fake-v0") and not shipped.is_shipped("ViT-B-32", "fake-v0")
    loaded = create_open_clip("mergelab-tiny", "fake-v0")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_altered_file_is_a_clear_error(fake_weights_dir):
    folder, _ = fake_weights_dir
    path = folder / "fake-v0.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"fake-v0.safetensors: sha256 .* does not match its card"):
        create_open_clip("mergelab-tiny", "fake-v0")


def test_missing_file_is_a_clear_error(fake_weights_dir):
    folder, _ = fake_weights_dir
    (folder / "fake-v0.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"fake-v0.safetensors: weights file of shipped tag 'fake-v0' is missing"):
        shipped.verified_weights("fake-v0")


def test_unknown_tag_of_a_repo_architecture_is_a_config_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\ndata: {tasks: {signs: {source: mini}}}\nmodel: {name: mergelab-tiny, "
                   "pretrained: no-such-tag}\nsuites: {s: [signs]}\nmethods: {ta: {method: task_arithmetic}}\n")
    with pytest.raises(ConfigError, match=r"'model.pretrained': 'no-such-tag' is not shipped for 'mergelab-tiny'"):
        load_config(cfg)


@pytest.mark.parametrize("tag", shipped.shipped_tags())
def test_every_shipped_tag_matches_its_card(tag):
    """The weights committed with the repository: sha256 as on the card, loadable, ≤ 50 MB."""
    card = shipped.read_card(tag)
    path = shipped.verified_weights(tag)
    assert path.stat().st_size == card["bytes"] <= 50 * 2**20
    sd = load_tensors(path)
    model = create_open_clip(card["model"]["name"], tag)
    assert set(sd) == set(model.state_dict())
    for key in ("corpus", "pretrain", "seed", "loss_curve", "code_version", "sha256"):
        assert card.get(key) is not None, key
