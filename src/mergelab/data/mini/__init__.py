"""The offline mini task suite and the captioned pretraining corpus.

Sixteen 32x32 RGB image-classification tasks, each a different visual domain,
generated deterministically from a seed with numpy (vectorised), PIL drawing,
the DejaVu/STIX fonts that matplotlib ships and scikit-learn's bundled
handwritten digits. Nothing is downloaded. ``DEFAULT_TASKS`` are the eight of the
embedded default config (stand-ins for EuroSAT, GTSRB, MNIST, RESISC45, SUN397,
Flowers102, EMNIST and PCAM); the other eight are used by the ablations (14/16-task
style suites; see docs/mini_suite.md).

Seed streams: a task's generated training set uses the stream
``[seed, tag(task), 0]`` and its test set ``[seed, tag(task), 1]``; the corpus
uses ``[seed, tag("corpus"), ...]``, so it can never replay a test stream
whatever seeds are chosen.

Modules: ``primitives`` (vectorised drawing), ``glyphs`` (PIL-rendered templates and
fonts), one module per task family (``textures``, ``overhead``, ``scenes``, ``vehicles``,
``signs``, ``shapes``, ``characters``, ``flowers``, ``faces``, ``cells``), ``tasks`` (the
task table), ``build`` (writing a task to disk), ``corpus`` and ``supervised`` (a
from-scratch learnability check).
"""
from .build import build_task, pixel_baselines, split_indices
from .corpus import (DEFAULT_CAPTION_NOISE, DEFAULT_FAMILY_WEIGHTS, DEFAULT_MENTION_PROB,
                     build_corpus, corpus_families)
from .primitives import RES
from .supervised import supervised_baseline
from .tasks import (ALL_TASKS, DEFAULT_TASKS, EXTRA_TASKS, GENERATOR_VERSION, MINI_TASKS,
                    OTHER_TASKS, STREAM_TEST, STREAM_TRAIN, MiniTask, get_task, task_arrays)

__all__ = ["ALL_TASKS", "DEFAULT_TASKS", "EXTRA_TASKS", "OTHER_TASKS", "MINI_TASKS", "MiniTask",
           "GENERATOR_VERSION", "STREAM_TRAIN", "STREAM_TEST", "RES", "get_task", "task_arrays",
           "split_indices", "build_task", "pixel_baselines", "supervised_baseline", "build_corpus",
           "corpus_families",
           "DEFAULT_FAMILY_WEIGHTS", "DEFAULT_MENTION_PROB", "DEFAULT_CAPTION_NOISE"]
