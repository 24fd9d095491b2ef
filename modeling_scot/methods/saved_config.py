"""The JSON form of a method's dataclass config: `to_dict` with its `model_type`, and `from_file` with checks."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import ClassVar


class SavedConfig:
    """Mixin for a dataclass config saved as JSON; subclasses set `model_type` and `label` (with its article, for
    messages: "a TAT")."""

    model_type: ClassVar[str] = ""
    label: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, **asdict(self)}

    @classmethod
    def from_file(cls, path: Path):
        """The config saved at `path`; a ValueError names the file and what is wrong."""
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} cannot be read as JSON: {err}") from None
        if not isinstance(values, dict) or values.pop("model_type", None) != cls.model_type:
            raise ValueError(f"{path} is not {cls.label} config (it needs \"model_type\": \"{cls.model_type}\")")
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {unknown}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None

    @classmethod
    def check_output(cls, folder: Path, file_name: str = "config.json") -> None:
        """Refuse to replace `folder` unless it is absent or holds a saved config of this kind at `file_name`."""
        if not folder.exists():
            return
        try:
            saved = json.loads((folder / file_name).read_text(encoding="utf-8")).get("model_type") == cls.model_type
        except (OSError, ValueError, AttributeError):
            saved = False
        if not saved:
            raise ValueError(f"{folder} exists and is not a saved {cls.label.split()[-1]} model; move it away or "
                             "choose another output")


__all__ = ["SavedConfig"]
