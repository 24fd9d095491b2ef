"""Triplets (caption, modification, modified caption, hard negatives) that supervise the Combiner."""

from .backend import CaptionRequest, TripletBackend
from .record import TRIPLET_COLUMNS, TRIPLET_FEATURES, TripletRecord
from .rules import RULES_VERSION, RulesBackend, generate_world_triplets

__all__ = [
    "RULES_VERSION",
    "TRIPLET_COLUMNS",
    "TRIPLET_FEATURES",
    "CaptionRequest",
    "RulesBackend",
    "TripletBackend",
    "TripletRecord",
    "generate_world_triplets",
]
