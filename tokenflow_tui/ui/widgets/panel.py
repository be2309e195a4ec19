"""A text panel for numbers that change several times a second."""
from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


class LivePanel(Static):
    """A Static repainted only when its content changes, and never re-laid out: its size is set in CSS."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._shown: tuple[str, tuple[object, ...]] | None = None

    def set_content(self, content: Content) -> None:
        # Content equality ignores styles; a state that only changes colour must repaint too
        key = (content.plain, tuple(content.spans))
        if key != self._shown:
            self._shown = key
            self.update(content, layout=False)
