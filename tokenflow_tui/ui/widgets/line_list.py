"""A list of any length drawn with the line API: only the visible items are ever fetched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

T = TypeVar("T")


class LineList(ScrollView, Generic[T], can_focus=True):
    """A cursor over `count` items; subclasses say how to fetch a slice and draw one item.

    The visible window is fetched in one call and kept until it scrolls out of view or `reload`
    fetches it again; `reload` repaints only the lines whose item changed, so a table that is
    refreshed several times a second costs little when little changes.
    """

    BINDINGS = [
        Binding("up", "cursor(-1)", "up", show=False),
        Binding("down", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "first", "first", show=False),
        Binding("end", "last", "last", show=False),
    ]
    COMPONENT_CLASSES = {"line-list--cursor", "line-list--empty"}

    class Highlighted(Message):
        """The cursor moved to another item."""

        def __init__(self, line_list: LineList, position: int) -> None:
            super().__init__()
            self.line_list = line_list
            self.position = position

        @property
        def control(self) -> LineList:
            return self.line_list

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.cursor = 0
        self._count = 0
        self._window_start = 0
        self._window: Sequence[T] = ()
        self._line_styles: dict[tuple[bool, str | None], Style] = {}

    @property
    def count(self) -> int:
        return self._count

    def fetch(self, start: int, stop: int) -> Sequence[T]:
        """Items `start` to `stop` (excluded)."""
        raise NotImplementedError

    def render_item(self, item: T, width: int, selected: bool) -> Strip:
        raise NotImplementedError

    def empty_text(self) -> str:
        """What the first line says while there is no item: an empty list looks broken otherwise."""
        return ""

    def reload(self, count: int) -> None:
        """Take the new item count, fetch the visible items again and repaint those that changed."""
        old_start, old_window, old_count = self._window_start, self._window, self._count
        self._count = count
        self.virtual_size = Size(0, count)
        if self.cursor >= count:
            self.cursor = max(0, count - 1)
        top = self.scroll_offset.y
        height = self.scrollable_content_region.height
        self._window = self.fetch(top, min(count, top + height)) if height and count > top else ()
        self._window_start = top
        if old_start != top or old_count != count:
            self.refresh()
            return
        for y in range(max(len(old_window), len(self._window))):
            old = old_window[y] if y < len(old_window) else None
            new = self._window[y] if y < len(self._window) else None
            if old != new:
                self.refresh_line(top + y)

    def rewind(self) -> None:
        """Back to the first item, as for a new list: the next `reload` repaints every line."""
        self.cursor = 0
        self._window = ()
        self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()

    def line_style(self, selected: bool, component: str | None = None) -> Style:
        """The style of a line, with the cursor's when selected, and a component class's colour on top."""
        # cached: `rich_style` walks every ancestor, and this is asked for every cell of every line
        key = (selected, component)
        style = self._line_styles.get(key)
        if style is None:
            style = self.rich_style
            if selected:
                style += self.get_component_rich_style("line-list--cursor")
            if component is not None:
                style += self.get_component_rich_style(component, partial=True)
            self._line_styles[key] = style
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._line_styles.clear()

    def selected(self) -> T | None:
        return self._item(self.cursor) if self._count else None

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        position = self.scroll_offset.y + y
        item = self._item(position) if position < self._count else None
        if item is None:
            if position == 0 and not self._count:
                style = self.line_style(False, "line-list--empty")
                return Strip([Segment(self.empty_text(), style)]).crop_extend(0, width, style)
            return Strip.blank(width, self.line_style(False))
        return self.render_item(item, width, position == self.cursor)

    def _item(self, position: int) -> T | None:
        offset = position - self._window_start
        if not 0 <= offset < len(self._window):
            height = max(1, self.scrollable_content_region.height)
            top = self.scroll_offset.y
            start = top if top <= position < top + height else position
            self._window = self.fetch(start, min(self._count, start + height))
            self._window_start = start
            offset = position - start
        return self._window[offset] if offset < len(self._window) else None

    def move_cursor(self, position: int) -> None:
        if not self._count:
            return
        position = max(0, min(self._count - 1, position))
        self.scroll_to_region(Region(0, position, 1, 1), animate=False, x_axis=False, immediate=True)
        if position != self.cursor:
            self.refresh_line(self.cursor)
            self.cursor = position
            self.refresh_line(position)
            self.post_message(self.Highlighted(self, position))

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor + direction * max(1, self.scrollable_content_region.height - 1))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(self._count - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None:
            self.move_cursor(self.scroll_offset.y + offset.y)
