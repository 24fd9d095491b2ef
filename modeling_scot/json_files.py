"""Typed reading of JSON files (benchmark annotations, saved manifests): every error is an [`AnnotationError`], a
ValueError that names the file, the entry and the field."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


class AnnotationError(ValueError):
    """A JSON file (a benchmark's annotations, a saved index's manifest) that cannot be read as its format: names
    the file, the entry and the field."""

    def __init__(
        self,
        file: Path,
        problem: str,
        index: int | None = None,
        entry_id: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file, self.index, self.entry_id, self.field = Path(file), index, entry_id, field
        where = [str(file)]
        if index is not None:
            where.append(f"entry {index}" + (f" (id {entry_id})" if entry_id is not None else ""))
        elif entry_id is not None:
            where.append(f"entry {entry_id}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join(where)}: {problem}")


def _reject_duplicate_keys(file: Path) -> Callable[[list[tuple[str, object]]], dict[str, object]]:
    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        result = {}
        for key, value in pairs:
            if key in result:
                raise AnnotationError(file, "appears twice in one JSON object", entry_id=key)
            result[key] = value
        return result

    return hook


def read_json(file: Path) -> object:
    """Parse a JSON file; a missing file, invalid JSON or a key repeated within one object raise [`AnnotationError`]."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnnotationError(file, "file not found") from None
    except IsADirectoryError:
        raise AnnotationError(file, "is a folder, expected a JSON file") from None
    except UnicodeDecodeError as error:
        raise AnnotationError(file, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys(file))
    except json.JSONDecodeError as error:
        raise AnnotationError(file, f"invalid JSON: {error}") from None


@dataclass(frozen=True)
class Entry:
    """One object of an annotation file (entry `index` of a list; None for a file holding one object), with typed
    field access that fails as [`AnnotationError`].

    Nested objects share their entry's index and id; their fields are reported as "parent.field".
    """

    file: Path
    index: int | None
    data: Mapping[str, object]
    entry_id: str | None = None
    prefix: str = ""

    def error(self, field: str | None, problem: str) -> AnnotationError:
        name = f"{self.prefix}{field}" if field is not None else (self.prefix.rstrip(".") or None)
        return AnnotationError(self.file, problem, self.index, self.entry_id, name)

    def get(self, name: str, kind: type | tuple[type, ...]) -> object:
        """The field `name`, checked to be of `kind` (a bool never passes as an int)."""
        if name not in self.data:
            raise self.error(name, "missing")
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            raise self.error(name, f"expected {expected}, got {type(value).__name__} {value!r}")
        return value

    def text(self, name: str) -> str:
        return self.get(name, str)

    def count(self, name: str, minimum: int = 0) -> int:
        """An integer field of at least `minimum`."""
        value = self.get(name, int)
        if value < minimum:
            raise self.error(name, f"expected an integer >= {minimum}, got {value}")
        return value

    def image_id(self, name: str) -> str:
        """An image id given as a string or an integer, as a string."""
        return str(self.get(name, (str, int)))

    def id_list(self, name: str) -> list[str]:
        """A non-empty list of image ids (strings or integers), as strings."""
        values = self.get(name, list)
        if not values or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
            raise self.error(name, f"expected a non-empty list of image ids, got {values!r}")
        return [str(v) for v in values]

    def child(self, name: str) -> Entry:
        """The nested object in field `name`."""
        return self._nested(self.get(name, dict), f"{name}.")

    def children(self, name: str) -> list[Entry]:
        """The nested objects of the list in field `name`."""
        items = self.get(name, list)
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.error(f"{name}[{position}]", f"expected an object, got {type(item).__name__}")
        return [self._nested(item, f"{name}[{position}].") for position, item in enumerate(items)]

    def _nested(self, data: Mapping[str, object], prefix: str) -> Entry:
        return Entry(self.file, self.index, data, self.entry_id, self.prefix + prefix)


def entries(file: Path, id_field: str | None = None) -> Iterator[Entry]:
    """The objects of a JSON list file, each as an [`Entry`] identified by its `id_field` value."""
    data = read_json(file)
    if not isinstance(data, list):
        raise AnnotationError(file, f"expected a JSON list of entries, got {type(data).__name__}")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise AnnotationError(file, f"expected an object, got {type(item).__name__}", index)
        entry_id = item.get(id_field) if id_field is not None else None
        yield Entry(Path(file), index, item, None if entry_id is None else str(entry_id))


__all__ = ["AnnotationError", "Entry", "entries", "read_json"]
