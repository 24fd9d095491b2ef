"""The Gradio app: a reference image and a modification text in, the top-k gallery images out.

One public endpoint, `search` (api_name "search"): inputs `image` (an image file), `text`, `k`, `method`
(scot, image, text, sum, slerp) and `hide_reference`; outputs the result gallery (images captioned with
rank and score), the modality weight (`{"text": w, "image": 1 - w}` for scot, else None) and a JSON report
(`method`, `settings` it ran with, `modality_weight`, `hidden`, `results`: rank, id, score).

Up to CONCURRENCY_LIMIT searches run at once and share model batches (see DemoSearch). Gradio does not decode
the uploaded image: the search reads it with `load_image`, so the page refuses the images the CLI refuses
(too many pixels, broken files) with the same message. The server hands out only its own static files, the
uploads and the result images, which are PNG copies of gallery images kept in a folder of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..methods import METHODS
from ..quickstart import scot_home
from .examples import world_examples
from .gradio_import import import_gradio
from .resources import load_resources
from .result_images import ResultImages
from .search import DemoInputError, DemoSearch
from .settings import DemoSettings

if TYPE_CHECKING:
    import gradio

API_NAME = "search"
DEFAULT_K = 10
MAX_K = 50
MAX_UPLOAD = "10mb"
CONCURRENCY_LIMIT = 64
MAX_THREADS = 80
"""Gradio's worker threads: the searches waiting for a batch, and the uploads and result files besides."""
PIXEL_ART = "pixel-art"
CSS = (
    "#reference img { width: 100%; height: 100%; object-fit: contain; } "
    f".{PIXEL_ART} img {{ image-rendering: pixelated; }}"
)
"""The reference fills its box; the world's small renders (64 px) are scaled up with sharp pixels."""
INTRO = """# SCOT: zero-shot composed image retrieval

Give a reference image and a text saying what to change: SCOT composes them into one query with a small
Combiner over a frozen dual encoder (trained on text triplets only) and ranks the gallery. Switch the method
to compare with the baselines. Gallery: {gallery}."""


def describe_gallery(search: DemoSearch) -> str:
    """One line naming the gallery, for the page."""
    source, count = search.index.source, len(search.index)
    if source.get("kind") == "world":
        return f"{count} images of the built-in world's benchmark (seed {source['seed']})"
    return f"{count} images of the folder {Path(source['root']).name}"


def uploaded_file(payload: dict | None, upload_folder: str) -> str | None:
    """The server path of the uploaded image that `payload` (Gradio's file data, unprocessed) names; a
    DemoInputError when it names a file outside `upload_folder`, where Gradio keeps uploads and examples."""
    if payload is None:
        return None
    path = payload.get("path") if isinstance(payload, dict) else None
    if not isinstance(path, str) or not Path(path).resolve().is_relative_to(Path(upload_folder).resolve()):
        raise DemoInputError("the reference image must be a file uploaded to this app")
    return path


def result_count(k: object, largest: int) -> int:
    """The number of results `k` asks for, a whole number from 1 to `largest`, else a DemoInputError."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 1 <= k <= largest or k != int(k):
        raise DemoInputError(f"the number of results must be a whole number from 1 to {largest}, got {k!r}")
    return int(k)


def build_app(
    search: DemoSearch, examples: list[tuple[str, str]], results: ResultImages | None = None
) -> gradio.Blocks:
    """The Blocks app over `search`, with `examples` (reference image file, modification text) to click; result
    images are served from `results` (default: under `$SCOT_HOME/demo/results`)."""
    gr = import_gradio()
    results = results or ResultImages(search.index.source, scot_home() / "demo" / "results")
    gr.set_static_paths([results.folder])
    largest_k = min(MAX_K, len(search.index))

    def run(image: dict | None, text: str | None, k: float, method: str, hide_reference: bool):
        """Inputs arrive unprocessed (`preprocess=False`): the image as Gradio's file data, not yet opened."""
        try:
            path = uploaded_file(image, reference.GRADIO_CACHE)
            result = search.search(path, str(text or ""), result_count(k, largest_k), method, bool(hide_reference))
        except DemoInputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        if not result.hits:
            gr.Warning("no gallery image is left to show: every one is a copy of the reference image")
        gallery = [(str(results.path(hit.id)), f"#{hit.rank}  score {hit.score:.3f}") for hit in result.hits]
        weight = result.modality_weight
        return gallery, None if weight is None else {"text": weight, "image": 1 - weight}, result.report()

    classes = [PIXEL_ART] if search.index.source.get("kind") == "world" else []
    with gr.Blocks(title="SCOT composed image retrieval", analytics_enabled=False) as app:
        gr.Markdown(INTRO.format(gallery=describe_gallery(search)))
        with gr.Row():
            with gr.Column(scale=1):
                reference = gr.Image(
                    label="reference image",
                    type="filepath",
                    sources=["upload", "clipboard"],
                    height=256,
                    elem_id="reference",
                    elem_classes=classes,
                )
                text = gr.Textbox(
                    label="modification text", placeholder="e.g. make the circle blue", elem_id="modification"
                )
                choices = [(METHODS[name].description, name) for name in search.methods]
                method = gr.Radio(choices, value="scot", label="query method")
                k = gr.Slider(1, largest_k, value=min(DEFAULT_K, largest_k), step=1, label="results (k)")
                hide_reference = gr.Checkbox(True, label="leave copies of the reference image out of the results")
                button = gr.Button("Search", variant="primary", elem_id="search")
            with gr.Column(scale=2):
                gallery = gr.Gallery(
                    label="results",
                    columns=5,
                    object_fit="contain",
                    elem_id="results",
                    elem_classes=classes,
                )
                weight = gr.Label(label="modality weight (SCOT)", show_heading=False, elem_id="modality-weight")
                with gr.Accordion("results as JSON", open=False):
                    report = gr.JSON(label="report")
        if examples:
            gr.Examples(
                [list(example) for example in examples],
                [reference, text],
                cache_examples=False,
                api_visibility="private",
                label="world queries (click one, then Search)",
            )
        inputs, outputs = [reference, text, k, method, hide_reference], [gallery, weight, report]
        shared = dict(preprocess=False, concurrency_limit=CONCURRENCY_LIMIT, concurrency_id=API_NAME)
        button.click(run, inputs, outputs, api_name=API_NAME, **shared)
        text.submit(run, inputs, outputs, api_visibility="private", **shared)
    return app


def create_app(settings: DemoSettings | None = None) -> gradio.Blocks:
    """The demo for `settings` (default: `DemoSettings.from_env()`): loads the model and the index (training the
    quickstart model and indexing the world's gallery first when they are the defaults and missing)."""
    import_gradio()
    settings = settings or DemoSettings.from_env()
    model, index, method_settings = load_resources(settings)
    search = DemoSearch(model, index, method_settings=method_settings)
    return build_app(search, world_examples(search.index.source, scot_home() / "demo" / "examples"))


def launch_app(app: gradio.Blocks, host: str | None = None, port: int | None = None, *, block: bool = True) -> str:
    """Serve `app` on host:port (None: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, else 127.0.0.1:7860) without a
    share link; returns its local URL. With `block`, serves until interrupted; otherwise returns at once (close
    it with `app.close()`)."""
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
        max_threads=MAX_THREADS,
        max_file_size=MAX_UPLOAD,
        css=CSS,
    )
    return url


__all__ = ["API_NAME", "build_app", "create_app", "launch_app"]
