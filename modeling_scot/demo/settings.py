"""Where the demo's model and gallery come from: arguments, environment variables, or the offline defaults.

- `SCOT_DEMO_MODEL`: Hub id or folder of a saved SCOT model. Default: `$SCOT_HOME/quickstart/model`, trained
  by the quickstart first when it is missing.
- `SCOT_DEMO_INDEX`: folder written by `scot index`. Default: the built-in world's benchmark gallery (of the
  quickstart that trained the model, else seed 0), indexed once under `$SCOT_HOME/demo`.
- `SCOT_HOME`: the cache folder (default `~/.cache/scot`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MODEL_ENV = "SCOT_DEMO_MODEL"
INDEX_ENV = "SCOT_DEMO_INDEX"
PATH_PREFIXES = ("/", ".")


def _looks_like_a_path(name: str) -> bool:
    return name.startswith(PATH_PREFIXES) or name.count("/") > 1 or "\\" in name


@dataclass(frozen=True)
class DemoSettings:
    """The demo's model (None: the quickstart's), index folder (None: the world's benchmark gallery), and the
    device, dtype and batch size it runs with."""

    model: str | None = None
    index: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64

    @classmethod
    def from_env(
        cls,
        model: str | None = None,
        index: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
    ) -> DemoSettings:
        """`model` and `index`, or else `$SCOT_DEMO_MODEL` and `$SCOT_DEMO_INDEX` (empty counts as unset)."""
        model = model or os.environ.get(MODEL_ENV) or None
        return cls(model, index or os.environ.get(INDEX_ENV) or None, device, dtype, batch_size)

    def check(self) -> None:
        """Fail before any model work on an index folder or a model folder that does not exist."""
        if self.index is not None and not Path(self.index).is_dir():
            raise FileNotFoundError(f"gallery index folder {self.index!r} does not exist: build one with scot index")
        if self.model is not None and _looks_like_a_path(self.model) and not Path(self.model).exists():
            raise FileNotFoundError(f"model folder {self.model!r} does not exist")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")


__all__ = ["INDEX_ENV", "MODEL_ENV", "DemoSettings"]
