"""The demo's model and gallery index: loaded from its settings, or trained and indexed offline on first use."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..modeling_scot import ScotModel
from ..quickstart import QuickstartSettings, run_quickstart, scot_home
from ..retrieval.indexing import check_encoder, load_model_and_fingerprint, write_index
from ..retrieval.index import CONFIG_FILE, GalleryIndex
from ..retrieval.sources import WorldGallery
from ..runtime import resolve_device, resolve_dtype
from .settings import DemoSettings

WORLD_SEED = 0
WORLD_QUERIES = 1000
MODEL_FILE = "config.json"
RESULTS_FILE = "results.json"


def quickstart_model(folder: Path, device_name: str = "auto", dtype_name: str = "auto") -> Path:
    """`folder/model`, running the quickstart into `folder` first when there is no saved model there."""
    model = folder / "model"
    if not (model / MODEL_FILE).is_file():
        print(
            f"no model at {model}: running the quickstart first to train one (about 5 minutes on 2 CPU cores)",
            file=sys.stderr,
            flush=True,
        )
        device = resolve_device(device_name)
        run_quickstart(folder, QuickstartSettings(), device, resolve_dtype(dtype_name, device))
    return model


def quickstart_results(model: str) -> dict:
    """The `results.json` of the quickstart that trained `model` (beside the model folder), else {}."""
    results = Path(model).parent / RESULTS_FILE
    if not Path(model).is_dir() or not results.is_file():
        return {}
    return json.loads(results.read_text(encoding="utf-8"))


def world_benchmark_of(model: str) -> tuple[int, int]:
    """The (seed, queries) of the world benchmark that the quickstart which trained `model` evaluated it on,
    else (WORLD_SEED, WORLD_QUERIES)."""
    settings = quickstart_results(model).get("settings", {})
    return settings.get("seed", WORLD_SEED), settings.get("test_queries", WORLD_QUERIES)


def validation_tuned_settings(model: str) -> dict[str, dict]:
    """The method settings that the quickstart which trained `model` chose on its world's validation split
    (Slerp's alpha), by method; {} without such a quickstart."""
    by_method = quickstart_results(model).get("settings_by_method", {})
    return {
        name: {key: value for key, value in settings.items() if key != "chosen_by"}
        for name, settings in by_method.items()
        if settings.get("chosen_by") == "validation"
    }


def world_index(model: ScotModel, fingerprint: str, seed: int, queries: int, batch_size: int) -> GalleryIndex:
    """The exact index of the world benchmark gallery of `seed`, built once per encoder under `$SCOT_HOME/demo`
    (and again when the world's gallery has changed since)."""
    folder = scot_home() / "demo" / f"world-{seed}-{queries}-{fingerprint[:16]}"
    source = WorldGallery(seed, queries)
    if (folder / CONFIG_FILE).is_file():
        index = GalleryIndex.load(folder)
        if index.ids == source.ids:
            return index
    print(f"indexing the world's benchmark gallery (seed {seed}) into {folder}", file=sys.stderr, flush=True)
    index, _ = write_index(model, fingerprint, source, folder, "exact", batch_size=batch_size)
    return index


def load_resources(settings: DemoSettings) -> tuple[ScotModel, GalleryIndex, dict[str, dict]]:
    """The model in eval mode, the gallery index the settings name (checked to come from the same encoder) and
    the method settings: those given, over, on the default world gallery, what its quickstart tuned."""
    settings.check()
    model_name = settings.model or str(quickstart_model(scot_home() / "quickstart", settings.device, settings.dtype))
    try:
        model, fingerprint = load_model_and_fingerprint(
            model_name, settings.device, settings.dtype, settings.image_tower
        )
    except OSError as err:
        raise ValueError(f"cannot load the model {model_name!r}: {err}") from err
    if settings.index is None:
        seed, queries = world_benchmark_of(model_name)
        index = world_index(model, fingerprint, seed, queries, settings.batch_size)
        return model, index, {**validation_tuned_settings(model_name), **settings.method_settings()}
    index = GalleryIndex.load(settings.index)
    check_encoder(index, fingerprint, settings.index, model_name)
    return model, index, settings.method_settings()


__all__ = ["load_resources", "quickstart_model", "validation_tuned_settings", "world_benchmark_of", "world_index"]
