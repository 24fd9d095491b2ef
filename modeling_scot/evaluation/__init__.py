"""Evaluation of composed image retrieval methods: metrics, benchmark loaders and runners, submission files."""

from ..json_files import AnnotationError
from .cir_data import CIRQuery, CIRSplit, MissingImagesError, check_images
from .circo import load_circo
from .cirr import load_cirr
from .fashioniq import load_fashioniq
from .genecis import load_genecis
from .runner import ORACLE, average_reports, evaluate_split, metrics_table
from .scoring import compute_metrics, top_k_ids
from .submissions import score_submission, write_circo_submission, write_cirr_submissions
from .world import evaluate_world, load_world, load_world_validation

__all__ = [
    "ORACLE",
    "AnnotationError",
    "CIRQuery",
    "CIRSplit",
    "MissingImagesError",
    "average_reports",
    "check_images",
    "compute_metrics",
    "evaluate_split",
    "evaluate_world",
    "load_circo",
    "load_cirr",
    "load_fashioniq",
    "load_genecis",
    "metrics_table",
    "score_submission",
    "top_k_ids",
    "load_world",
    "load_world_validation",
    "write_circo_submission",
    "write_cirr_submissions",
]
