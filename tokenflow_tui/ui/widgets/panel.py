"""A text panel for numbers that change several times a second."""

from __future__ import annotations

from textual.content import Content
from textual.geometry import Region
from textual.strip import Strip
from textual.visual import Visual
from textual.widget import Widget

_Key = tuple[str, tuple[object, ...]]


class LivePanel(Widget):
    """Lines of text drawn with the line API: a new content repaints only the lines that changed.

    A refresh of the dashboard changes a digit or two in most panels; a whole-widget repaint would
    draw every line of every panel again, each frame. Each line's strip is kept until its text (or
    the panel's width or styles) changes. The size is set in CSS; a line wider than the panel is cut.
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._lines: list[Content] = []
        self._keys: list[_Key] = []
        self._strips: dict[int, Strip] = {}
        self._strips_width = 0

    def set_content(self, content: Content) -> None:
        lines = content.split("\n", allow_blank=True)
        # Content equality ignores styles; a state that only changes colour must repaint too
        keys: list[_Key] = [(line.plain, tuple(line.spans)) for line in lines]
        if keys == self._keys:
            return
        old, self._lines, self._keys = self._keys, lines, keys
        if len(old) != len(keys):
            self._strips.clear()
            # a panel of auto height (the header, when a pause reason wraps) is laid out again
            self.refresh(layout=True)
            return
        width = self.size.width
        for y, (was, now) in enumerate(zip(old, keys)):
            if was != now:
                self._strips.pop(y, None)
                self.refresh(Region(0, y, width, 1))

    def render(self) -> Content:
        """The whole text, as shown (what tests and auto sizes read; drawing goes by `render_line`)."""
        return Content("\n").join(self._lines)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if width != self._strips_width:
            self._strips.clear()
            self._strips_width = width
        strip = self._strips.get(y)
        if strip is None:
            line = self._lines[y] if y < len(self._lines) else Content("")
            strips = Visual.to_strips(self, line, width, 1, self.visual_style, pad=True)
            strip = strips[0] if strips else Strip.blank(width, self.visual_style.rich_style)
            self._strips[y] = strip
        return strip

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
