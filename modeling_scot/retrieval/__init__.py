"""Gallery retrieval: embed a gallery, index it (exact, or approximate with faiss), search it with composed queries."""

from .faiss_backend import FaissNotInstalledError, faiss_available
from .gallery import embed_gallery, embed_gallery_folder
from .index import AUTO_APPROXIMATE_ABOVE, KINDS, GalleryIndex
from .query import ComposedQuery, compose_query, search_query
from ..similarity import image_scores
from .search import exact_search
from .sources import DatasetImages, GallerySource, ImageFiles, WorldGallery, gallery_image
from .store import Gallery

__all__ = [
    "AUTO_APPROXIMATE_ABOVE",
    "KINDS",
    "ComposedQuery",
    "DatasetImages",
    "FaissNotInstalledError",
    "Gallery",
    "GalleryIndex",
    "GallerySource",
    "ImageFiles",
    "WorldGallery",
    "compose_query",
    "search_query",
    "embed_gallery",
    "embed_gallery_folder",
    "exact_search",
    "image_scores",
    "faiss_available",
    "gallery_image",
]
