"""Per-sample predictions of an evaluation, beside its metrics JSON.

``<metrics>.npz`` (numpy, no pickled objects) holds, for every split and task the
evaluation ran, four aligned arrays named ``<split>/<task>/<field>``:

* ``index``  int32: the sample's position in the split (after ``max_eval_per_task``),
* ``label``  int32: its true class,
* ``pred``   int32: the predicted class (argmax of the logits),
* ``margin`` float32: logit of the true class minus the largest other logit (> 0 when
  the sample is classified correctly, unless logits tie).

The metrics JSON's accuracies are ``accuracy_of`` of these arrays, so tables and
intervals computed from the files match the JSONs exactly (docs/uncertainty.md).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from .io import ArtifactError, atomic_path

FIELDS = ("index", "label", "pred", "margin")
DTYPES = {"index": np.int32, "label": np.int32, "pred": np.int32, "margin": np.float32}


@dataclass(frozen=True)
class TaskPredictions:
    """One task's predictions on one split (arrays of equal length, ordered by index)."""

    index: np.ndarray
    label: np.ndarray
    pred: np.ndarray
    margin: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.label

    @property
    def accuracy(self) -> float:
        return accuracy_of(self.label, self.pred)


def accuracy_of(label: np.ndarray, pred: np.ndarray) -> float:
    """Fraction correct, exactly ``count / n`` rounded once to a float."""
    n = len(label)
    if n == 0:
        raise ArtifactError("cannot compute an accuracy on an empty split")
    return int(np.count_nonzero(np.asarray(pred) == np.asarray(label))) / n


def predictions_path(metrics_json: str | Path) -> Path:
    """Where the predictions of the evaluation that wrote ``metrics_json`` are."""
    return Path(metrics_json).with_suffix(".npz")


def save_predictions(preds: Mapping[str, Mapping[str, TaskPredictions]], path: str | Path) -> Path:
    """Write ``{split: {task: TaskPredictions}}`` atomically (compressed .npz, no pickle)."""
    arrays = {f"{split}/{task}/{f}": np.ascontiguousarray(getattr(p, f), dtype=DTYPES[f])
              for split, tasks in preds.items() for task, p in tasks.items() for f in FIELDS}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy would append .npz to a name
            np.savez_compressed(fh, **arrays)
    return path


def load_predictions(path: str | Path) -> dict[str, dict[str, TaskPredictions]]:
    """``{split: {task: TaskPredictions}}`` of a predictions file."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: predictions file missing (rerun the evaluation that writes it)")
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path}: not a readable predictions file ({exc})") from exc
    groups: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for key, arr in raw.items():
        parts = key.split("/")
        if len(parts) != 3 or parts[2] not in FIELDS:
            raise ArtifactError(f"{path}: unexpected array '{key}' (expected <split>/<task>/<field>, "
                                f"field one of {FIELDS})")
        groups.setdefault((parts[0], parts[1]), {})[parts[2]] = arr
    out: dict[str, dict[str, TaskPredictions]] = {}
    for (split, task), fields in groups.items():
        missing = [f for f in FIELDS if f not in fields]
        if missing:
            raise ArtifactError(f"{path}: '{split}/{task}' lacks array(s) {missing}")
        if len({len(fields[f]) for f in FIELDS}) != 1:
            raise ArtifactError(f"{path}: arrays of '{split}/{task}' differ in length")
        out.setdefault(split, {})[task] = TaskPredictions(**{f: fields[f] for f in FIELDS})
    return out
