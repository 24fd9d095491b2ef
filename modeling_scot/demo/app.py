"""The Gradio app: a reference image and a modification text in, the top-k gallery images out.

One public endpoint, `search` (api_name "search"): inputs `image` (an image file), `text`, `k`, `method`
(scot, image, text, sum, slerp) and `hide_reference`; outputs the result gallery (images captioned with
rank and score), the modality weight (`{"text": w, "image": 1 - w}` for scot, else None) and a JSON report
(`method`, `modality_weight`, `hidden`, `results`: rank, id, score).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..quickstart import scot_home
from .examples import world_examples
from .gradio_import import import_gradio
from .resources import load_resources
from .search import DemoInputError, DemoSearch
from .settings import DemoSettings

if TYPE_CHECKING:
    import gradio

API_NAME = "search"
DEFAULT_K = 10
MAX_K = 50
MAX_UPLOAD = "10mb"
PIXEL_ART = "pixel-art"
CSS = (
    "#reference img { width: 100%; height: 100%; object-fit: contain; } "
    f".{PIXEL_ART} img {{ image-rendering: pixelated; }}"
)
"""The reference fills its box; the world's small renders (64 px) are scaled up with sharp pixels."""
METHOD_CHOICES = [
    ("SCOT (learned Combiner)", "scot"),
    ("image only", "image"),
    ("text only", "text"),
    ("sum", "sum"),
    ("Slerp", "slerp"),
]
INTRO = """# SCOT: zero-shot composed image retrieval

Give a reference image and a text saying what to change: SCOT composes them into one query with a small
Combiner over a frozen dual encoder (trained on text triplets only) and ranks the gallery. Switch the method
to compare with the training-free baselines. Gallery: {gallery}."""


def describe_gallery(search: DemoSearch) -> str:
    """One line naming the gallery, for the page."""
    source, count = search.index.source, len(search.index)
    if source.get("kind") == "world":
        return f"{count} images of the built-in world's benchmark (seed {source['seed']})"
    return f"{count} images of the folder {Path(source['root']).name}"


def build_app(search: DemoSearch, examples: list[tuple[str, str]]) -> gradio.Blocks:
    """The Blocks app over `search`, with `examples` (reference image file, modification text) to click."""
    gr = import_gradio()

    def run(image, text: str, k: float, method: str, hide_reference: bool):
        try:
            result = search.search(image, text or "", int(k), method, hide_reference)
        except DemoInputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        if not result.hits:
            gr.Warning("no gallery image is left to show: every one is a copy of the reference image")
        gallery = [(search.image(hit.id), f"#{hit.rank}  score {hit.score:.3f}") for hit in result.hits]
        weight = result.modality_weight
        return gallery, None if weight is None else {"text": weight, "image": 1 - weight}, result.report()

    largest_k = min(MAX_K, len(search.index))
    classes = [PIXEL_ART] if search.index.source.get("kind") == "world" else []
    with gr.Blocks(title="SCOT composed image retrieval", analytics_enabled=False) as app:
        gr.Markdown(INTRO.format(gallery=describe_gallery(search)))
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(
                    label="reference image",
                    type="pil",
                    image_mode="RGB",
                    sources=["upload", "clipboard"],
                    format="png",
                    height=256,
                    elem_id="reference",
                    elem_classes=classes,
                )
                text = gr.Textbox(
                    label="modification text", placeholder="e.g. make the circle blue", elem_id="modification"
                )
                method = gr.Radio(METHOD_CHOICES, value="scot", label="query method")
                k = gr.Slider(1, largest_k, value=min(DEFAULT_K, largest_k), step=1, label="results (k)")
                hide_reference = gr.Checkbox(True, label="leave copies of the reference image out of the results")
                button = gr.Button("Search", variant="primary", elem_id="search")
            with gr.Column(scale=2):
                gallery = gr.Gallery(
                    label="results",
                    columns=5,
                    format="png",
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
                [image, text],
                cache_examples=False,
                api_visibility="private",
                label="world queries (click one, then Search)",
            )
        inputs, outputs = [image, text, k, method, hide_reference], [gallery, weight, report]
        button.click(run, inputs, outputs, api_name=API_NAME, concurrency_id=API_NAME)
        text.submit(run, inputs, outputs, api_visibility="private", concurrency_id=API_NAME)
    return app


def create_app(settings: DemoSettings | None = None) -> gradio.Blocks:
    """The demo for `settings` (default: `DemoSettings.from_env()`): loads the model and the index (training the
    quickstart model and indexing the world's gallery first when they are the defaults and missing)."""
    import_gradio()
    search = DemoSearch(*load_resources(settings or DemoSettings.from_env()))
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
        max_file_size=MAX_UPLOAD,
        css=CSS,
    )
    return url


__all__ = ["API_NAME", "build_app", "create_app", "launch_app"]
