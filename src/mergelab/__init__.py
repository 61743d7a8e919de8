"""mergelab: a reproducibility pipeline for model-merging research."""

__version__ = "0.1.0"
