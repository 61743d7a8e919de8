"""Sanity check that a task is learnable by the mini suite's own image encoder: the encoder
of an open_clip config, randomly initialised, trained from scratch with labels (a linear
classifier on its embedding). It separates "the architecture cannot represent the task"
from "the pretrained CLIP does not yet separate its classes" (docs/mini_suite.md)."""
from __future__ import annotations

import numpy as np

from .primitives import RES
from .tasks import get_task, task_arrays


def supervised_baseline(name: str, model_name: str = "mergelab-tiny", seed: int = 0, n_train: int = 20000,
                        n_test: int = 1000, epochs: int = 6, batch_size: int = 128, lr: float = 1e-3,
                        progress: bool = False) -> dict[str, float]:
    """Train ``model_name``'s image encoder plus a linear head from scratch on ``n_train``
    generated images of mini task ``name`` (AdamW, one-cycle schedule, seeded) and return
    its accuracy on the first 1000 training images and on ``n_test`` test images, with the
    last batch's loss and chance level."""
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    from ...models import create_open_clip, normalize_images, seed_everything

    if n_train < batch_size:
        raise ValueError(f"n_train ({n_train}) must be at least batch_size ({batch_size})")
    seed_everything(seed)
    encoder = create_open_clip(model_name, None).visual
    if tuple(encoder.image_size) != (RES, RES):
        raise ValueError(f"model '{model_name}' takes {tuple(encoder.image_size)} images; "
                         f"the mini tasks are {RES}x{RES}")
    xtr, ytr, xte, yte = task_arrays(name, seed, n_train, n_test)
    k = len(get_task(name).classnames)
    model = nn.Sequential(encoder, nn.Linear(encoder.output_dim, k))

    def images(x: np.ndarray) -> torch.Tensor:
        return normalize_images(torch.from_numpy(x).permute(0, 3, 1, 2))

    x, y = images(xtr), torch.from_numpy(ytr)
    steps_per_epoch = n_train // batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for _ in tqdm(range(epochs), desc=f"supervised {name}", disable=not progress):
        order = torch.randperm(n_train, generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        train_acc = (model(x[:1000]).argmax(1) == y[:1000]).float().mean().item()
        test_acc = (model(images(xte)).argmax(1) == torch.from_numpy(yte)).float().mean().item()
    return {"chance": 1.0 / k, "train": train_acc, "test": test_acc, "final_loss": float(loss.detach())}
