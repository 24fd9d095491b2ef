"""Every method of the harness trained and tested side by side on the built-in world, over several seeds.

Per seed, every trained method gets the same frozen world CLIP and the same data: the quickstart's rule-written
triplets of that seed's training scenes (SCOT trains on the triplets, Text-Anchored Tuning on their images and
captions, LinCIR on their captions and modified captions, ISA on their images). Nothing comes from the test split: settings a method
can tune (Slerp's alpha) are chosen on the seed's validation split. Each method is then scored on the seed's test
split by `evaluate_world`, and its query cost is measured on one query (encoder FLOPs and latency).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from transformers import set_seed

from .evaluation.world import evaluate_world, load_world
from .io_utils import write_json
from .methods import DEFAULT_METHOD_NAMES, CIRMethod, build_method
from .methods.isa_model import IsaModel
from .methods.isa_training import IsaTrainingArguments, train_isa
from .methods.keywords import WORLD_LEXICON
from .methods.lincir_training import LincirTrainingArguments, train_lincir
from .methods.tat_model import with_tuned_image_tower
from .methods.tat_training import TatTrainingArguments, train_tat
from .modeling_scot import ScotModel
from .quickstart import QuickstartSettings, triplet_dataset
from .retrieval.query import compose_query
from .training import fit_combiner
from .world import clip_path

METRICS = ("recall@1", "recall@5", "recall_subset@1")
LATENCY_RUNS = 20


@dataclass
class CompareSettings:
    """Seeds, the shared data budget (the quickstart's), and each trained method's training length."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "World seeds to run."})
    num_scenes: int = field(default=5000, metadata={"help": "Training scenes (the data every method trains on)."})
    edits_per_scene: int = field(default=8, metadata={"help": "Rule-written triplets per training scene."})
    scot_epochs: int = field(default=16, metadata={"help": "SCOT's Combiner epochs (the quickstart's)."})
    tat_epochs: float = field(default=2.0, metadata={"help": "Text-Anchored Tuning epochs over the scene images."})
    tat_learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of TAT's LoRA adapters."})
    lincir_steps: int = field(default=300, metadata={"help": "LinCIR's phi training steps."})
    isa_epochs: float = field(default=5.0, metadata={"help": "ISA epochs over the scene images."})
    isa_learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of ISA's query encoder."})
    test_queries: int = field(default=1000, metadata={"help": "Queries of each seed's test split."})

    def __post_init__(self) -> None:
        if not self.seeds or any(seed < 0 for seed in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct non-negative integers, got {self.seeds}")
        for name in ("num_scenes", "edits_per_scene", "scot_epochs", "lincir_steps", "test_queries"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("tat_epochs", "tat_learning_rate", "isa_epochs", "isa_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")

    def quickstart(self, seed: int) -> QuickstartSettings:
        return QuickstartSettings(
            seed=seed, num_scenes=self.num_scenes, edits_per_scene=self.edits_per_scene, epochs=self.scot_epochs
        )


@dataclass
class TrainedMethod:
    """A method ready to test: the model its queries run on, the registry method, how long it trained and what."""

    model: ScotModel
    method: str
    settings: dict
    train_seconds: float
    trainable_parameters: int


def _trainable(parameters) -> int:
    return sum(parameter.numel() for parameter in parameters if parameter.requires_grad)


def _quiet(args_class, folder: Path, seed: int, **values):
    return args_class(
        output_dir=str(folder), seed=seed, data_seed=seed, disable_tqdm=True, logging_steps=50, use_cpu=True, **values
    )


def train_scot(seed: int, settings: CompareSettings, triplets, work: Path) -> ScotModel:
    """SCOT's Combiner as the quickstart trains it."""
    quickstart = settings.quickstart(seed)
    set_seed(seed)
    model = ScotModel.from_encoder(clip_path(), temperature=quickstart.temperature)
    args = quickstart.training_arguments(work / "scot-trainer", torch.device("cpu"))
    fit_combiner(model, triplets, args, work / "scot-cache", resume=True)
    return model.eval()


def train_tat_tower(seed: int, settings: CompareSettings, triplets, work: Path) -> tuple[ScotModel, int]:
    """The world CLIP with its image tower TAT-tuned on the triplets' images and captions, and the adapters' size."""
    args = _quiet(
        TatTrainingArguments, work / "tat-args", seed, num_train_epochs=settings.tat_epochs,
        learning_rate=settings.tat_learning_rate, per_device_train_batch_size=128, dataloader_drop_last=True,
    )  # fmt: skip
    tuned, _ = train_tat(clip_path(), triplets, args, work / "tat", resume=True)
    parameters = _trainable(tuned.parameters())
    return with_tuned_image_tower(ScotModel.from_encoder(clip_path()), work / "tat" / "model").eval(), parameters


def train_phi(seed: int, settings: CompareSettings, triplets, work: Path) -> tuple[Path, int]:
    """LinCIR's phi trained on the triplets' captions (the world lexicon's keyword spans), and its size."""
    args = _quiet(LincirTrainingArguments, work / "lincir-args", seed, max_steps=settings.lincir_steps,
                  per_device_train_batch_size=128)  # fmt: skip
    phi, _ = train_lincir(clip_path(), triplets, args, work / "lincir", lexicon=WORLD_LEXICON, resume=True)
    return work / "lincir" / "model", _trainable(phi.phi.parameters())


def train_query_encoder(seed: int, settings: CompareSettings, triplets, work: Path) -> tuple[Path, int]:
    """ISA's light query encoder distilled from the world CLIP's image tower on the triplets' images, and its size."""
    args = _quiet(IsaTrainingArguments, work / "isa", seed, num_train_epochs=settings.isa_epochs,
                  learning_rate=settings.isa_learning_rate, dataloader_drop_last=True)  # fmt: skip
    set_seed(seed)
    isa = IsaModel.from_encoder(clip_path())
    train_isa(isa, triplets, args, resume=True)
    return work / "isa" / "model", _trainable(isa.query_encoder.parameters())


def _timed(train: Callable[[], object], work: Path, name: str) -> tuple[object, float]:
    """`train()` and its seconds; the seconds of the run that finished the training are kept in
    `work/train_seconds.json`, so that a rerun, which resumes from the finished work, reports them again."""
    record = work / "train_seconds.json"
    seconds = json.loads(record.read_text()) if record.is_file() else {}
    started = time.monotonic()
    result = train()
    if name not in seconds:
        seconds[name] = round(time.monotonic() - started, 1)
        write_json(record, seconds)
    return result, seconds[name]


def trained_methods(seed: int, settings: CompareSettings, work: Path) -> dict[str, TrainedMethod]:
    """Every method of the comparison for `seed`, trained into `work` (resumed where a run stopped)."""
    triplets = triplet_dataset(settings.quickstart(seed), work / "triplets")
    scot, scot_seconds = _timed(lambda: train_scot(seed, settings, triplets, work), work, "scot")
    (tuned, tat_parameters), tat_seconds = _timed(lambda: train_tat_tower(seed, settings, triplets, work), work, "tat")
    (phi, phi_parameters), phi_seconds = _timed(lambda: train_phi(seed, settings, triplets, work), work, "lincir")
    (isa, isa_parameters), isa_seconds = _timed(
        lambda: train_query_encoder(seed, settings, triplets, work), work, "isa"
    )
    combiner = _trainable(scot.parameters())
    methods = {
        name: TrainedMethod(scot, name, {}, scot_seconds if name == "scot" else 0.0, combiner if name == "scot" else 0)
        for name in DEFAULT_METHOD_NAMES
    }
    methods["tat+slerp"] = TrainedMethod(tuned, "slerp", {}, tat_seconds, tat_parameters)
    methods["lincir"] = TrainedMethod(scot, "lincir", {"model_path": str(phi)}, phi_seconds, phi_parameters)
    methods["isa"] = TrainedMethod(scot, "isa", {"model_path": str(isa)}, isa_seconds, isa_parameters)
    return methods


def query_cost(model: ScotModel, method: CIRMethod, image: Image.Image, text: str) -> dict:
    """Encoder FLOPs (matrix products, counted by torch) and median latency of one query from an image and a text."""
    compose_query(model, image, text, method)  # loads what the method needs once, outside the counts
    counter = FlopCounterMode(display=False)
    with counter:
        compose_query(model, image, text, method)
    times = []
    for _ in range(LATENCY_RUNS):
        started = time.perf_counter()
        compose_query(model, image, text, method)
        times.append(time.perf_counter() - started)
    return {"gflops": round(counter.get_total_flops() / 1e9, 4), "latency_ms": round(1000 * statistics.median(times), 2)}


def run_seed(seed: int, settings: CompareSettings, work: Path) -> dict:
    """Each method's test metrics, training time, trainable parameters and query cost for `seed`."""
    methods = trained_methods(seed, settings, work)
    split = load_world(seed, 1)
    image, text = split.open_image(split.queries[0].reference), split.queries[0].text
    results = {}
    for name, trained in methods.items():
        report = evaluate_world(
            trained.model, seed, (trained.method,), cache_dir=work / "embeddings", num_queries=settings.test_queries,
            progress=False, method_settings={trained.method: trained.settings} if trained.settings else None,
        )  # fmt: skip
        chosen = {key: value for key, value in report["settings"][trained.method].items() if key != "chosen_by"}
        method = build_method(trained.method, "world", **chosen)
        results[name] = {
            **{metric: report["methods"][trained.method][metric] for metric in METRICS},
            "recall@1_by_edit_type": report["recall@1_by_edit_type"][trained.method],
            "settings": report["settings"][trained.method],
            "train_seconds": trained.train_seconds,
            "trainable_parameters": trained.trainable_parameters,
            **query_cost(trained.model, method, image, text),
        }
    return results


def _spread(values: Sequence[float]) -> dict:
    return {
        "mean": round(statistics.fmean(values), 2),
        "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
        "per_seed": list(values),
    }


def summarise(settings: CompareSettings, runs: dict[int, dict]) -> dict:
    """`{"seeds", "settings", "methods": {name: {metric: {"mean", "std", "per_seed"}, ...}}}` over the seeds."""
    seeds = settings.seeds
    methods = {}
    for name in runs[seeds[0]]:
        rows = [runs[seed][name] for seed in seeds]
        edit_types = rows[0]["recall@1_by_edit_type"]
        methods[name] = {
            **{metric: _spread([row[metric] for row in rows]) for metric in METRICS},
            "recall@1_by_edit_type": {
                edit: _spread([row["recall@1_by_edit_type"][edit] for row in rows]) for edit in edit_types
            },
            "train_seconds": _spread([row["train_seconds"] for row in rows]),
            "trainable_parameters": rows[0]["trainable_parameters"],
            "query_gflops": rows[0]["gflops"],
            "query_latency_ms": _spread([row["latency_ms"] for row in rows]),
            "settings_per_seed": [row["settings"] for row in rows],
        }
    return {"seeds": seeds, "settings": asdict(settings), "methods": methods}


def run_comparison(settings: CompareSettings, work: Path, output: Path | None = None) -> dict:
    """Train and test every method on every seed (work kept under `work/seed-N`, resumed); the summary, also
    written to `output` when given."""
    torch.manual_seed(0)
    started = time.monotonic()
    runs = {seed: run_seed(seed, settings, work / f"seed-{seed}") for seed in settings.seeds}
    summary = summarise(settings, runs) | {"seconds": round(time.monotonic() - started, 1)}
    if output is not None:
        write_json(output, summary)
    return summary


def comparison_table(summary: dict) -> str:
    """The summary as one table: metrics and R@1 by edit type as mean ± std over the seeds, then cost and size."""
    methods = summary["methods"]
    edit_types = list(next(iter(methods.values()))["recall@1_by_edit_type"])
    header = ["method", "R@1", "R@5", "Rs@1", *(f"R@1 {edit}" for edit in edit_types),
              "train s", "GFLOPs/query", "ms/query", "trainable"]  # fmt: skip

    def cell(value: dict) -> str:
        return f"{value['mean']:.1f}±{value['std']:.1f}"

    rows = [
        [name, *(cell(values[metric]) for metric in METRICS),
         *(cell(values["recall@1_by_edit_type"][edit]) for edit in edit_types),
         f"{values['train_seconds']['mean']:.0f}", f"{values['query_gflops']:.3f}",
         f"{values['query_latency_ms']['mean']:.1f}", f"{values['trainable_parameters']:,}"]  # fmt: skip
        for name, values in methods.items()
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(value).rjust(width) for value, width in zip(row, widths)) for row in [header, *rows]]
    return "\n".join([f"seeds {summary['seeds']} (mean±std over seeds)", *lines, *_settings_lines(summary)])


def _settings_lines(summary: dict) -> list[str]:
    """One line per method that has settings: the values each seed ran with (trained folders left out) and how
    they were chosen."""
    lines = []
    for name, values in summary["methods"].items():
        per_seed = values["settings_per_seed"]
        shown = [", ".join(f"{k}={v}" for k, v in seed.items() if k not in ("chosen_by", "model_path")) for seed in per_seed]
        if any(shown):
            chosen_by = sorted({seed.get("chosen_by", "given") for seed in per_seed})
            lines.append(f"settings of {name}: {' / '.join(shown)} (seeds {summary['seeds']}; {', '.join(chosen_by)})")
    return lines


__all__ = ["CompareSettings", "comparison_table", "query_cost", "run_comparison", "summarise", "trained_methods"]
