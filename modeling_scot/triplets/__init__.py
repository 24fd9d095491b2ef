"""Triplets (caption, modification, modified caption, hard negatives) that supervise the Combiner."""

from .record import TRIPLET_COLUMNS, TripletRecord

__all__ = ["TRIPLET_COLUMNS", "TripletRecord"]
