"""The footer of every screen: the keys that work there, help and quit first."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

# a narrow terminal cuts the end of the footer: these stay in view, and `?` lists every other key
FIRST = ("help", "quit")


class KeyFooter(Footer):
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
