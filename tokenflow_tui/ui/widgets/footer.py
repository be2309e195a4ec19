"""The footer of every screen: the keys that work there, help and quit first, never cut mid-word."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey, FooterLabel, KeyGroup

# a narrow terminal has no room for every key: these stay in view, and `?` lists every other key
FIRST = ("help", "quit")


class KeyFooter(Footer):
    """Keys that do not fit are left out whole (a group with its label), and `?` says how many."""

    def __init__(self) -> None:
        # ctrl+p is in the help, not on the right of the footer, where it would cut the keys mid-word
        super().__init__(show_command_palette=False)

    def compose(self) -> ComposeResult:
        shown = {
            binding.action: (binding, enabled, tooltip)
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
            if binding.show
        }
        for action in FIRST:
            if action in shown:
                binding, enabled, tooltip = shown[action]
                yield FooterKey(
                    binding.key,
                    self.app.get_key_display(binding),
                    binding.description,
                    action,
                    disabled=not enabled,
                    tooltip=tooltip,
                ).data_bind(compact=Footer.compact)
        for widget in super().compose():
            if not (isinstance(widget, FooterKey) and widget.action in FIRST):
                yield widget

    _fitted = True  # the keys composed last have been fitted (once: a hidden key has no width to measure)
    _tries = 0  # refreshes waited for the keys' layout

    async def recompose(self) -> None:
        await super().recompose()
        self._fitted, self._tries = False, 0
        self.call_after_refresh(self.fit_keys)

    def on_resize(self) -> None:
        self.call_after_refresh(self.recompose)

    def fit_keys(self) -> None:
        """Hide the keys from the first that does not fit on; `?` then says how many it holds besides."""
        if self._fitted or not self.size.width:
            return
        if any(not child.region.width for child in self.children) and self._tries < 5:
            self._tries += 1
            self.call_after_refresh(self.fit_keys)  # laid out in the next refresh
            return
        self._fitted = True
        items = _items(list(self.children))
        help_key = next((w for w in self.children if isinstance(w, FooterKey) and w.action == "help"), None)
        width = self.size.width
        left = self.region.x
        ends = [max(w.region.right + w.styles.margin.right for w in item) - left for item in items]
        keep = len(items)
        while keep and ends[keep - 1] + self._note_cells(help_key, len(items) - keep) > width:
            keep -= 1
        hidden = items[keep:]
        for item in hidden:
            for widget in item:
                widget.display = False
        if help_key is not None and hidden:
            help_key.description = f"{help_key.description} (+{_count_keys(hidden)} keys)"
            help_key.refresh(layout=True)

    @staticmethod
    def _note_cells(help_key: FooterKey | None, hidden: int) -> int:
        return len(f" (+{hidden} keys)") if help_key is not None and hidden else 0


def _items(children: list[Widget]) -> list[list[Widget]]:
    """The footer's entries: a key alone, or a group of keys with its label."""
    items: list[list[Widget]] = []
    for child in children:
        if isinstance(child, FooterLabel) and items and isinstance(items[-1][-1], KeyGroup):
            items[-1].append(child)
        else:
            items.append([child])
    return items


def _count_keys(items: list[list[Widget]]) -> int:
    return sum(
        len(w.query(FooterKey)) if isinstance(w, KeyGroup) else isinstance(w, FooterKey) for i in items for w in i
    )
