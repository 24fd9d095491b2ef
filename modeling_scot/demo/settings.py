"""Where the demo's model and gallery come from: arguments, environment variables, or the offline defaults.

- `SCOT_DEMO_MODEL`: Hub id or folder of a saved SCOT model. Default: `$SCOT_HOME/quickstart/model`, trained
  by the quickstart first when it is missing.
- `SCOT_DEMO_INDEX`: folder written by `scot index`. Default: the built-in world's benchmark gallery (of the
  quickstart that trained the model, else seed 0), indexed once under `$SCOT_HOME/demo`.
- `SCOT_DEMO_IMAGE_TOWER`: a TAT folder (written by `train_tat`) whose adapters tune the model's image tower.
- `SCOT_DEMO_LINCIR`: a LinCIR phi folder (written by `train_lincir`); adds LinCIR to the method switch.
- `SCOT_DEMO_ISA`: an ISA query-encoder folder (written by `train_isa`); adds ISA to the method switch.
- `SCOT_DEMO_SLERP_ALPHA`: Slerp's text weight. Default: on the quickstart's world gallery, the value the quickstart
  chose on its validation split; elsewhere 0.8.
- `SCOT_HOME`: the cache folder (default `~/.cache/scot`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MODEL_ENV = "SCOT_DEMO_MODEL"
INDEX_ENV = "SCOT_DEMO_INDEX"
IMAGE_TOWER_ENV = "SCOT_DEMO_IMAGE_TOWER"
LINCIR_ENV = "SCOT_DEMO_LINCIR"
ISA_ENV = "SCOT_DEMO_ISA"
SLERP_ALPHA_ENV = "SCOT_DEMO_SLERP_ALPHA"
PATH_PREFIXES = ("/", ".")


def _looks_like_a_path(name: str) -> bool:
    return name.startswith(PATH_PREFIXES) or name.count("/") > 1 or "\\" in name


@dataclass(frozen=True)
class DemoSettings:
    """The demo's model (None: the quickstart's), index folder (None: the world's benchmark gallery), the
    device, dtype and batch size it runs with, the optional TAT image tower, LinCIR phi and ISA folders, and
    Slerp's alpha (None: the default of the gallery)."""

    model: str | None = None
    index: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64
    image_tower: str | None = None
    lincir: str | None = None
    isa: str | None = None
    slerp_alpha: float | None = None

    @classmethod
    def from_env(
        cls,
        model: str | None = None,
        index: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
        image_tower: str | None = None,
        lincir: str | None = None,
        isa: str | None = None,
        slerp_alpha: float | None = None,
    ) -> DemoSettings:
        """Each folder and Slerp's alpha given, or else its environment variable (`$SCOT_DEMO_MODEL`,
        `$SCOT_DEMO_INDEX`, `$SCOT_DEMO_IMAGE_TOWER`, `$SCOT_DEMO_LINCIR`, `$SCOT_DEMO_ISA`,
        `$SCOT_DEMO_SLERP_ALPHA`; empty counts as unset)."""
        if slerp_alpha is None and os.environ.get(SLERP_ALPHA_ENV):
            value = os.environ[SLERP_ALPHA_ENV]
            try:
                slerp_alpha = float(value)
            except ValueError:
                raise ValueError(f"{SLERP_ALPHA_ENV}={value!r} is not a number") from None
        return cls(
            model or os.environ.get(MODEL_ENV) or None,
            index or os.environ.get(INDEX_ENV) or None,
            device,
            dtype,
            batch_size,
            image_tower or os.environ.get(IMAGE_TOWER_ENV) or None,
            lincir or os.environ.get(LINCIR_ENV) or None,
            isa or os.environ.get(ISA_ENV) or None,
            slerp_alpha,
        )

    def method_settings(self) -> dict[str, dict]:
        """The settings given: `model_path` of the trained methods whose folders are given, Slerp's `alpha`."""
        settings = {name: {"model_path": folder} for name, folder in (("lincir", self.lincir), ("isa", self.isa)) if folder}
        if self.slerp_alpha is not None:
            settings["slerp"] = {"alpha": self.slerp_alpha}
        return settings

    def check(self) -> None:
        """Fail before any model work on an index folder or a model folder that does not exist."""
        if self.index is not None and not Path(self.index).is_dir():
            raise FileNotFoundError(f"gallery index folder {self.index!r} does not exist: build one with scot index")
        if self.model is not None and _looks_like_a_path(self.model) and not Path(self.model).exists():
            raise FileNotFoundError(f"model folder {self.model!r} does not exist")
        folders = (("TAT image tower", self.image_tower), ("LinCIR phi", self.lincir), ("ISA", self.isa))
        for what, folder in folders:
            if folder is not None and not Path(folder).is_dir():
                raise FileNotFoundError(f"{what} folder {folder!r} does not exist")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.slerp_alpha is not None and not 0.0 <= self.slerp_alpha <= 1.0:
            raise ValueError(f"Slerp's alpha must be in [0, 1], got {self.slerp_alpha}")


__all__ = ["IMAGE_TOWER_ENV", "INDEX_ENV", "ISA_ENV", "LINCIR_ENV", "MODEL_ENV", "SLERP_ALPHA_ENV", "DemoSettings"]
