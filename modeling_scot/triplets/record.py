"""The triplet record: one training example for the Combiner, and its dataset column names."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from datasets import Features, Image, Sequence, Value


@dataclass
class TripletRecord:
    """One (image, caption, modification, modified caption) example written by an LLM or by rules.

    Attributes:
        source_id: identifies the image; triplets sharing it share the image (embedded once).
        image: the reference image: a path or URL, or an `Image` feature value in a dataset.
        caption: the original caption c of the image.
        modification: the modification text m (what to change).
        modified_caption: the caption u of the image after the modification (the training target).
        hard_negatives: captions close to u that do not satisfy m (extra negatives in the loss).
    """

    source_id: str
    image: object
    caption: str
    modification: str
    modified_caption: str
    hard_negatives: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The record as a dataset row (holding the image object itself, not a copy of it)."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["hard_negatives"] = list(self.hard_negatives)
        return row


TRIPLET_COLUMNS: tuple[str, ...] = tuple(TripletRecord.__dataclass_fields__)

TRIPLET_FEATURES = Features(
    {
        "source_id": Value("string"),
        "image": Image(),
        "caption": Value("string"),
        "modification": Value("string"),
        "modified_caption": Value("string"),
        "hard_negatives": Sequence(Value("string")),
    }
)
"""Dataset features of triplet records whose images are stored in the dataset."""
