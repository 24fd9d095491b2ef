"""Gradio, the optional `demo` extra, imported with its telemetry and update check turned off."""

from __future__ import annotations

import os
from types import ModuleType

INSTALL_HINT = 'pip install "modeling-scot[demo]"'


class GradioNotInstalledError(ImportError, ValueError):
    """The demo was asked for but Gradio is not installed."""


def import_gradio() -> ModuleType:
    """The gradio module (analytics off unless GRADIO_ANALYTICS_ENABLED says otherwise); a
    GradioNotInstalledError naming the install command without it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as err:
        raise GradioNotInstalledError(f"the demo needs Gradio, which is not installed: {INSTALL_HINT}") from err
    return gradio


__all__ = ["INSTALL_HINT", "GradioNotInstalledError", "import_gradio"]
