"""The paper datasets: where each one lives, how its columns are named, its class
names and CLIP prompt templates, and the protocol's split rules.

Every paper task ends up as one HF ``DatasetDict`` directory with splits ``train``,
``validation`` and ``test`` and two columns, ``image`` (``datasets.Image``) and
``label`` (``datasets.ClassLabel`` carrying the class names the zero-shot head is
built from). The directory also holds ``mergelab_source.json`` saying where the
data came from and which split rule made the validation split.

Sources (``data.tasks.<task>.source``):

* ``hub``: ``datasets.load_dataset(hub_id, hub_config, cache_dir=data.cache_dir)``.
  The hub ids, split names and column names are in ``HUB_TASKS``; a task config may
  override ``hub_id`` / ``hub_config``.
* ``local`` (``path:``): a folder in one of four layouts, detected in this order:
  a saved ``DatasetDict`` (``save_to_disk`` output, has ``dataset_dict.json``);
  parquet files per split (``<split>.parquet``, ``<split>-*.parquet``,
  ``<split>/*.parquet``, also under ``data/``); or a torchvision ``ImageFolder``
  tree ``<path>/train/<class>/*.png``, ``<path>/test/<class>/...`` and optionally
  ``<path>/val/<class>/...``; or the MNIST family's IDX files
  (``train-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``, ...; module ``idx``).

Split rules (``data.tasks.<task>.split_protocol``):

* ``full`` (task-vector / TSV protocol): validation = a random 10 % of the
  training split, at most 5,000 examples, drawn with a ``torch.Generator`` seeded
  with the config seed (0 in the paper configs) exactly as ``random_split`` with
  lengths ``[n - n_val, n_val]`` does; training uses the rest; test = the standard
  test split.
* ``lora`` (KnOTS protocol): Cars, GTSRB, MNIST, SUN397, SVHN: validation = the
  first 20 % of the KnOTS code's fixed permutation of the test split (shipped as
  ``mergelab/data/knots_splits/<task>.npy``, ``mergelab.data.knots_index``), test = the
  other 80 %, training = the whole training split. When the test split has another size
  than the file indexes, a permutation seeded with the config seed replaces it and
  ``mergelab_source.json`` says so. DTD, EuroSAT, RESISC45: the source's own
  validation split (``val/`` folder or a ``validation``/``valid``/``val`` split);
  when the source has none, the ``full`` rule is used and this is recorded in
  ``mergelab_source.json``. Every other task: the ``full`` rule.

Pre-download with internet: ``python -m mergelab.cli paper-data download --cache-dir DIR
--tasks Cars DTD ...`` (see ``docs/paper_scale.md``).

Modules: ``tasks`` (the dataset table: sources, class names, templates), ``sources``
(loading a hub dataset or a local folder), ``idx`` (the IDX files), ``splits`` (the split
rules), ``prepare``.
"""
from .prepare import prepare_task
from .sources import download, download_command, hub_table, load_hub, load_local, resolve_classes
from .splits import (FULL_VAL_CAP, FULL_VAL_FRACTION, LORA_OWN_VAL, LORA_VAL_FRACTION,
                     LORA_VAL_FROM_TEST, full_split_indices, lora_validation, split_rule,
                     test_split_indices)
from .tasks import (GENERIC_TEMPLATES, HUB_TASKS, HUB_VARIANTS, IMAGE_COLUMNS, LABEL_COLUMNS,
                    TEMPLATES, VAL_SPLITS, HubTask, PaperDataError, canonical_task, hub_task,
                    templates_for)

__all__ = ["prepare_task", "download", "hub_table", "download_command", "load_hub", "load_local", "resolve_classes",
           "FULL_VAL_CAP", "FULL_VAL_FRACTION", "LORA_OWN_VAL", "LORA_VAL_FRACTION",
           "LORA_VAL_FROM_TEST", "full_split_indices", "lora_validation", "split_rule",
           "test_split_indices", "GENERIC_TEMPLATES", "HUB_TASKS", "HUB_VARIANTS", "IMAGE_COLUMNS",
           "LABEL_COLUMNS", "TEMPLATES", "VAL_SPLITS", "HubTask", "PaperDataError",
           "canonical_task", "hub_task", "templates_for"]
