"""`GalleryIndex`: top-k search over a gallery's embeddings by inner product, saved and loaded from a folder.

Kinds: `exact` (torch top-k over the stored matrix; no extra packages, deterministic ties), and with the
optional faiss package `flat` (exact IndexFlatIP), `ivf`, `hnsw` and `ivfpq` (approximate). `auto` is
`exact` up to `AUTO_APPROXIMATE_ABOVE` embeddings, and `ivf` above it when faiss is installed.

A gallery of multi-vector embeddings (N, K, D: BLIP-2's query tokens) is searched as BLIP-2 scores text against
images, each image by its best vector: exact search takes the maximum over an image's K scores; a faiss index
holds one vector per query token and pools the hits per image.

A saved index is a folder: `gallery.parquet` (a `datasets` parquet file: `id`, `embedding`), `index.json`
(kind, params, dim, vectors per image, count, metric, model fingerprint, and where the images are: `source`, see
`ImageFiles.describe` and `WorldGallery.describe`) and, for faiss kinds, `index.faiss`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from ..io_utils import write_json
from .faiss_backend import (
    FAISS_KINDS,
    INSTALL_HINT,
    PARAM_NAMES,
    build_faiss_index,
    build_faiss_index_streamed,
    faiss_available,
    faiss_search,
    read_faiss_index,
    resolve_params,
    write_faiss_index,
)
from .search import MISSING, exact_search
from .store import (
    EMBEDDINGS_FILE,
    Gallery,
    check_embeddings,
    check_ids,
    gallery_file_shape,
    is_normalized,
    iter_embeddings,
    read_embeddings,
    read_ids,
    read_manifest,
    vectors_per_item,
    write_embeddings,
)

logger = logging.getLogger(__name__)

KINDS = ("auto", "exact", *FAISS_KINDS)
AUTO_APPROXIMATE_ABOVE = 250_000
CONFIG_FILE = "index.json"
FAISS_FILE = "index.faiss"
FORMAT = "scot-gallery-index"
FORMAT_VERSION = 1
METRIC = "inner_product"


def resolve_kind(kind: str, count: int) -> str:
    """The concrete kind for `kind` ("auto" picks by gallery size and whether faiss is installed)."""
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose from {KINDS}")
    if kind != "auto":
        return kind
    if count <= AUTO_APPROXIMATE_ABOVE:
        return "exact"
    if faiss_available():
        return "ivf"
    logger.warning(f"exact search over {count} embeddings: for a faster approximate index, {INSTALL_HINT}")
    return "exact"


def _drop_excluded(
    scores: torch.Tensor, indices: torch.Tensor, exclude: Sequence[set[int]], k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k results of each row that are not excluded, padded with (-inf, -1)."""
    kept_scores = torch.full((len(indices), k), -torch.inf)
    kept_indices = torch.full((len(indices), k), MISSING)
    for row, excluded in enumerate(exclude):
        found = indices[row].tolist()
        keep = [col for col, index in enumerate(found) if index not in excluded and index != MISSING][:k]
        kept_scores[row, : len(keep)] = scores[row, keep]
        kept_indices[row, : len(keep)] = indices[row, keep]
    return kept_scores, kept_indices


def _best_vector_per_image(
    scores: torch.Tensor, indices: torch.Tensor, vectors: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """From vector hits (best first) of a gallery with `vectors` rows per image, each image's first (best) hit:
    the first k distinct images, padded with (-inf, -1). Among the top k x `vectors` vector hits of an exact index
    there are always k distinct images, ranked as their best vectors rank."""
    kept_scores = torch.full((len(indices), k), -torch.inf)
    kept_indices = torch.full((len(indices), k), MISSING)
    for row, (row_scores, row_hits) in enumerate(zip(scores.tolist(), indices.tolist())):
        seen: dict[int, float] = {}
        for score, hit in zip(row_scores, row_hits):
            if hit != MISSING and hit // vectors not in seen:
                seen[hit // vectors] = score
        best = list(seen.items())[:k]
        kept_indices[row, : len(best)] = torch.tensor([image for image, _ in best], dtype=torch.long)
        kept_scores[row, : len(best)] = torch.tensor([score for _, score in best])
    return kept_scores, kept_indices


class GalleryIndex:
    """Search a gallery of embeddings (N, D), or (N, K, D) scored by each image's best vector, by inner product;
    build with [`GalleryIndex.build`]."""

    def __init__(
        self,
        ids: list[str],
        kind: str,
        params: dict[str, int],
        dim: int,
        *,
        embeddings: torch.Tensor | None = None,
        faiss_index=None,
        model_fingerprint: str | None = None,
        normalized: bool = True,
        gallery_file: Path | None = None,
        source: dict | None = None,
        vectors: int = 1,
    ):
        self.ids, self.kind, self.params, self.dim, self.vectors = ids, kind, params, dim, vectors
        self.model_fingerprint, self.normalized, self.source = model_fingerprint, normalized, source
        self._embeddings, self._faiss, self._gallery_file = embeddings, faiss_index, gallery_file
        self._positions: dict[str, int] | None = None

    @classmethod
    def build(
        cls,
        embeddings: torch.Tensor,
        ids: Sequence[str],
        kind: str = "auto",
        *,
        params: dict[str, int] | None = None,
        model_fingerprint: str | None = None,
        source: dict | None = None,
    ) -> GalleryIndex:
        """Index `embeddings` (N, D, L2-normalised for cosine similarity; or N, K, D with K vectors per image) named
        by `ids`.

        `params` overrides the defaults sized from the N x K vectors: `nlist`, `nprobe` (ivf, ivfpq), `m`,
        `ef_construction`, `ef_search` (hnsw), `pq_m`, `pq_bits` (ivfpq). `source` records where the
        images are (a gallery source's `describe()`), so that they can be shown later.
        """
        check_embeddings(embeddings, "gallery embeddings")
        ids = list(ids)
        check_ids(ids, embeddings.shape[0])
        embeddings = embeddings.detach().to(device="cpu", dtype=torch.float32).contiguous()
        vectors, dim = vectors_per_item(embeddings), embeddings.shape[-1]
        kind = resolve_kind(kind, len(ids) * vectors)
        if kind == "exact" and params:
            raise ValueError(f"index kind 'exact' takes no parameters, got {sorted(params)}")
        params = {} if kind == "exact" else resolve_params(kind, len(ids) * vectors, dim, params)
        faiss_index = None if kind == "exact" else build_faiss_index(kind, embeddings.reshape(-1, dim), params)
        return cls(
            ids,
            kind,
            params,
            dim,
            embeddings=embeddings,
            faiss_index=faiss_index,
            model_fingerprint=model_fingerprint,
            normalized=is_normalized(embeddings),
            source=source,
            vectors=vectors,
        )

    @classmethod
    def build_from_file(
        cls,
        gallery_file: str | os.PathLike,
        kind: str = "auto",
        *,
        params: dict[str, int] | None = None,
        model_fingerprint: str | None = None,
        source: dict | None = None,
    ) -> GalleryIndex:
        """Index the gallery parquet file `gallery_file` (as [`GalleryIndex.build`] does its embeddings).

        A faiss kind reads the file batch by batch (twice: once for the training sample, once to add the vectors)
        and keeps only the ids and the faiss index in memory, so a gallery larger than memory is indexed; `exact`
        search holds the whole matrix, and loads it."""
        gallery_file = Path(gallery_file)
        shape = gallery_file_shape(gallery_file)
        vectors, dim = (shape[1] if len(shape) == 3 else 1), shape[-1]
        if resolve_kind(kind, shape[0] * vectors) == "exact":
            ids, embeddings = read_embeddings(gallery_file)
            return cls.build(embeddings, ids, "exact", params=params, model_fingerprint=model_fingerprint, source=source)
        kind = resolve_kind(kind, shape[0] * vectors)
        ids = read_ids(gallery_file, check_rows=False)  # the passes over the embeddings check every row
        params = resolve_params(kind, len(ids) * vectors, dim, params)
        normalized = True

        def batches():
            nonlocal normalized
            for _, rows in iter_embeddings(gallery_file):
                normalized = normalized and is_normalized(torch.tensor(rows))
                yield rows.reshape(-1, dim)

        faiss_index = build_faiss_index_streamed(kind, dim, len(ids) * vectors, batches, params)
        return cls(
            ids,
            kind,
            params,
            dim,
            faiss_index=faiss_index,
            model_fingerprint=model_fingerprint,
            normalized=normalized,
            gallery_file=gallery_file,
            source=source,
            vectors=vectors,
        )

    @classmethod
    def from_gallery(
        cls, gallery: Gallery, kind: str = "auto", *, params: dict[str, int] | None = None
    ) -> GalleryIndex:
        """Index an embedded [`Gallery`], recording the encoder that embedded it."""
        fingerprint = gallery.model_fingerprint
        return cls.build(gallery.embeddings, gallery.ids, kind, params=params, model_fingerprint=fingerprint)

    def __len__(self) -> int:
        return len(self.ids)

    def _position(self, item: str) -> int:
        if self._positions is None:
            self._positions = {name: position for position, name in enumerate(self.ids)}
        if item not in self._positions:
            raise ValueError(f"cannot exclude {item!r}: no such id in the index")
        return self._positions[item]

    def _check_queries(self, query_embeds: torch.Tensor) -> torch.Tensor:
        if not isinstance(query_embeds, torch.Tensor) or query_embeds.ndim != 2 or not query_embeds.is_floating_point():
            shape = tuple(query_embeds.shape) if isinstance(query_embeds, torch.Tensor) else type(query_embeds).__name__
            raise ValueError(f"query embeddings must be a 2-D floating tensor (Q, D), got {shape}")
        if query_embeds.shape[1] != self.dim:
            raise ValueError(
                f"query embeddings have {query_embeds.shape[1]} features but the index holds {self.dim}-dimensional "
                "embeddings: embed the queries with the encoder that built the index"
            )
        if not torch.isfinite(query_embeds).all():
            raise ValueError("query embeddings contain NaN or infinite values")
        return query_embeds.detach().to(device="cpu", dtype=torch.float32)

    def search(
        self, query_embeds: torch.Tensor, k: int = 10, *, exclude: Sequence[Sequence[str]] | None = None
    ) -> tuple[torch.Tensor, list[list[str | None]]]:
        """The `k` best gallery ids for each query (Q, D), best first, with their scores (Q, k).

        `k` larger than the gallery is clamped to its size. `exclude` lists, per query, ids never returned
        (e.g. the reference image). Slots left empty (by exclusion, or an approximate index finding fewer
        than k) have score -inf and id None.
        """
        queries = self._check_queries(query_embeds)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if exclude is not None and len(exclude) != len(queries):
            raise ValueError(f"exclude has {len(exclude)} entries for {len(queries)} queries")
        k = min(k, len(self))
        excluded = None if exclude is None else [{self._position(item) for item in row} for row in exclude]
        if self._faiss is None:
            scores, indices = exact_search(queries, self._embeddings, k, exclude=excluded)
        else:
            extra = max((len(row) for row in excluded), default=0) if excluded else 0
            wanted = min(k + extra, len(self))
            scores, indices = faiss_search(self._faiss, queries, min(wanted * self.vectors, len(self) * self.vectors))
            if self.vectors > 1:
                scores, indices = _best_vector_per_image(scores, indices, self.vectors, wanted)
            if excluded:
                scores, indices = _drop_excluded(scores, indices, excluded, k)
        return scores, [[self.ids[i] if i != MISSING else None for i in row] for row in indices.tolist()]

    def config(self) -> dict:
        """The JSON config saved as `index.json`."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "params": self.params,
            "dim": self.dim,
            "vectors": self.vectors,
            "count": len(self),
            "metric": METRIC,
            "normalized": self.normalized,
            "model_fingerprint": self.model_fingerprint,
            "source": self.source,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index into `folder`; `index.json` is written last and marks a complete index."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / EMBEDDINGS_FILE
        if self._embeddings is not None:
            write_embeddings(target, self.ids, self._embeddings)
        elif self._gallery_file.resolve() != target.resolve():
            tmp = target.with_name(target.name + ".tmp")
            tmp.unlink(missing_ok=True)
            try:  # a hard link shares the file's blocks: a gallery larger than the disk's free space is not copied
                os.link(self._gallery_file, tmp)
            except OSError:
                shutil.copyfile(self._gallery_file, tmp)
            os.replace(tmp, target)
        if self._faiss is not None:
            write_faiss_index(self._faiss, folder / FAISS_FILE, self.kind)
        write_json(folder / CONFIG_FILE, self.config())
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> GalleryIndex:
        """An index saved with [`GalleryIndex.save`]; faiss kinds keep only ids and the faiss index in memory.

        Every file is checked first: `index.json`'s fields, the gallery file's columns, ids and finite rows, and
        the faiss index's type, metric, dimension and size; each problem is a ValueError naming the file."""
        folder = Path(folder)
        config = read_config(folder)
        kind, params, dim, vectors = config["kind"], config["params"], config["dim"], config["vectors"]
        embeddings, faiss_index = None, None
        if kind == "exact":
            ids, embeddings = read_embeddings(folder / EMBEDDINGS_FILE)
            found_vectors, found_dim = vectors_per_item(embeddings), embeddings.shape[-1]
        else:
            ids = read_ids(folder / EMBEDDINGS_FILE)
            faiss_index = read_faiss_index(folder / FAISS_FILE, kind, params, len(ids) * vectors)
            found_vectors, found_dim = vectors, faiss_index.d
        if (len(ids), found_vectors, found_dim) != (config["count"], vectors, dim):
            raise ValueError(
                f"the index at {folder} holds {len(ids)} x {found_vectors} x {found_dim} embeddings (images x vectors "
                f"x dim) but {CONFIG_FILE} says {config['count']} x {vectors} x {dim}"
            )
        return cls(
            ids,
            kind,
            params,
            dim,
            embeddings=embeddings,
            faiss_index=faiss_index,
            model_fingerprint=config["model_fingerprint"],
            normalized=config["normalized"],
            gallery_file=folder / EMBEDDINGS_FILE,
            source=config["source"],
            vectors=vectors,
        )


def read_config(folder: Path) -> dict:
    """The fields of a saved index's `index.json`, each checked; an `AnnotationError` (a ValueError) naming the
    file and the field otherwise."""
    config = read_manifest(folder, CONFIG_FILE, "gallery index")
    if config.data.get("format") != FORMAT:
        raise config.error("format", f"expected {FORMAT!r}, got {config.data.get('format')!r}: not a saved index")
    if config.count("format_version") != FORMAT_VERSION:
        raise config.error("format_version", f"this version reads format_version {FORMAT_VERSION}")
    kind = config.text("kind")
    if kind not in KINDS[1:]:
        raise config.error("kind", f"expected one of {list(KINDS[1:])}, got {kind!r}")
    params = config.get("params", dict)
    names = PARAM_NAMES.get(kind, ())
    if set(params) != set(names) or not all(type(value) is int and value >= 1 for value in params.values()):
        raise config.error("params", f"kind {kind!r} takes positive integers {list(names)}, got {params!r:.200}")
    if config.text("metric") != METRIC:
        raise config.error("metric", f"expected {METRIC!r}, got {config.data['metric']!r}")
    source = config.data.get("source")
    if source is not None and not isinstance(source, dict):
        raise config.error("source", f"expected an object or null, got {type(source).__name__}")
    return {
        "kind": kind,
        "params": params,
        "dim": config.count("dim", 1),
        "vectors": config.count("vectors", 1) if "vectors" in config.data else 1,
        "count": config.count("count", 1),
        "normalized": config.get("normalized", bool),
        "model_fingerprint": config.get("model_fingerprint", (str, type(None))),
        "source": source,
    }


__all__ = ["AUTO_APPROXIMATE_ABOVE", "KINDS", "GalleryIndex", "read_config", "resolve_kind"]
