"""The Gradio demo: search a gallery with a reference image and a modification text (`scot demo`, the Space).

Gradio is the optional `demo` extra; it is imported only when an app is built.
"""

from .app import API_NAME, build_app, create_app, launch_app
from .search import DemoInputError, DemoSearch, Hit, SearchResult
from .settings import INDEX_ENV, MODEL_ENV, DemoSettings

__all__ = [
    "API_NAME",
    "INDEX_ENV",
    "MODEL_ENV",
    "DemoInputError",
    "DemoSearch",
    "DemoSettings",
    "Hit",
    "SearchResult",
    "build_app",
    "create_app",
    "launch_app",
]
