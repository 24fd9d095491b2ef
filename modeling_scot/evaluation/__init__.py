"""Evaluation of composed image retrieval methods: metrics and benchmark runners."""

from .world import evaluate_world, tune_slerp_alpha

__all__ = ["evaluate_world", "tune_slerp_alpha"]
