"""Task data: the offline mini suite (``mini``) and the one loader (``loading``)."""
from .loading import classnames, load_task_splits, split_to_tensor, templates_for
from .mini import DEFAULT_TASKS, MINI_TASKS, MiniTask, build_corpus, build_task

__all__ = ["MINI_TASKS", "DEFAULT_TASKS", "MiniTask", "build_task", "build_corpus",
           "load_task_splits", "classnames", "split_to_tensor", "templates_for"]
