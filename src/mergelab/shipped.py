"""Pretrained weights shipped inside the package, loaded like published open_clip weights.

``model: {name: mergelab-tiny, pretrained: <tag>}`` loads ``weights/<tag>.safetensors``
when ``weights/<tag>.json`` (its card) exists and names that architecture. The card holds
the architecture, the corpus recipe, the pretraining config and seed, the loss curve, the
code version and the file's sha256, which is checked before every load.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .io import ArtifactError, save_json, sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: open_clip configs of the repo's own architectures (e.g. mergelab-tiny)
CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"


def card_path(tag: str) -> Path:
    return WEIGHTS_DIR / f"{tag}.json"


def weights_path(tag: str) -> Path:
    return WEIGHTS_DIR / f"{tag}.safetensors"


def shipped_tags() -> list[str]:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


def is_shipped(model_name: str, tag: str | None) -> bool:
    """True when tag names a card shipped for this architecture (else: an open_clip tag)."""
    if not tag or not card_path(tag).is_file():
        return False
    return read_card(tag)["model"]["name"] == model_name


def read_card(tag: str) -> dict[str, Any]:
    path = card_path(tag)
    if not path.is_file():
        raise ArtifactError(f"{path}: no card for shipped weights '{tag}' "
                            f"(shipped: {', '.join(shipped_tags()) or 'none'})")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    for key in ("model", "sha256"):
        if key not in card:
            raise ArtifactError(f"{path}: card lacks the key '{key}'")
    return card


def verified_weights(tag: str) -> Path:
    """The weights file of a shipped tag, after checking its sha256 against the card."""
    card = read_card(tag)
    path = weights_path(tag)
    if not path.is_file():
        raise ArtifactError(f"{path}: weights file of shipped tag '{tag}' is missing "
                            "(a clone without it? it is committed with the repository)")
    digest = sha256_file(path)
    if digest != card["sha256"]:
        raise ArtifactError(f"{path}: sha256 {digest} does not match its card {card_path(tag)} "
                            f"({card['sha256']}); the file is altered or truncated")
    return path


def write_card(tag: str, weights: str | Path, pretrain_metrics: Mapping[str, Any],
               model_cfg: Mapping[str, Any], architecture: Mapping[str, Any],
               corpus: Mapping[str, Any], pretrain: Mapping[str, Any], seed: int,
               extra: Mapping[str, Any] | None = None) -> Path:
    """Copy a pretrained θ0 into the package as <tag> and write its card."""
    import shutil
    dst = weights_path(tag)
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, dst)
    card = {
        "tag": tag,
        "model": {"name": model_cfg["name"], "architecture": dict(architecture)},
        "corpus": dict(corpus),
        "pretrain": dict(pretrain),
        "seed": seed,
        "steps": pretrain_metrics.get("steps"),
        "seconds": pretrain_metrics.get("seconds"),
        "loss_first": pretrain_metrics.get("loss_first"),
        "loss_last": pretrain_metrics.get("loss_last"),
        "loss_curve": pretrain_metrics.get("loss_curve"),
        "code_version": pretrain_metrics.get("provenance", {}).get("code_version"),
        "packages": pretrain_metrics.get("provenance", {}).get("packages"),
        **dict(extra or {}),
        "sha256": sha256_file(dst),
        "bytes": dst.stat().st_size,
    }
    save_json(card, card_path(tag))
    return card_path(tag)
