"""Evaluation: task metrics, perplexity and teacher agreement for models and artifacts (see evaluate.py)."""

from edgedistill.eval.evaluate import EvalConfig, EvalReport, evaluate

__all__ = ["EvalConfig", "EvalReport", "evaluate"]
