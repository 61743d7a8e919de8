"""Zero-shot classification heads from the CLIP text encoder and task templates."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .engine import text_head
from .io import load_tensors
from .models import create_open_clip, pick_device, tokenizer
from .splits import task_classnames


def templates_for(task: str, task_cfg: Mapping[str, Any]) -> list[str]:
    source = task_cfg.get("source", "mini")
    if source == "mini":
        from .data.loading import templates_for as mini_templates
        return list(mini_templates(task))
    from .data.paper import templates_for as paper_templates
    return list(paper_templates(task, task_cfg))


def build_head(task: str, task_cfg: Mapping[str, Any], task_dir: str | Path,
               model_cfg: Mapping[str, Any], pretrained: str | Path, out_path: str | Path,
               device: str = "auto") -> None:
    model = create_open_clip(model_cfg["name"])
    model.load_state_dict(load_tensors(pretrained))
    names = task_classnames(task_dir)
    templates = templates_for(task, task_cfg)
    head = text_head(model, tokenizer(model_cfg["name"]), names, templates, pick_device(device))
    head.save(out_path, metadata={"task": task, "classes": str(len(names)),
                                  "templates": str(len(templates))})
