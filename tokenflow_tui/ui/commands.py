"""The command palette (ctrl+p): every action of the screen in view and of the app, with its key.

Built from the bindings each time it opens, so that it says what the keys do now, on this screen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from textual.actions import parse
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode

PALETTE_ACTION = "command_palette"


class KeysProvider(Provider):
    """One command per action bound on the screen under the palette (its widgets' and the app's too)."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        """(text, help, run) of each enabled action, its keys joined; in the order the footer has them."""
        found: dict[tuple[int, str], tuple[DOMNode, Binding, list[str]]] = {}
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if binding.action == PALETTE_ACTION or not active.enabled or not self._ours(active.node, binding.action):
                continue
            shown = binding.key_display or self.app.get_key_display(binding)
            entry = found.setdefault((id(active.node), binding.action), (active.node, binding, []))
            if binding.id is not None and entry[1].id is None:
                # the dashboard's own binding names the action and its key comes first (q before Textual's ^q)
                found[(id(active.node), binding.action)] = entry = (active.node, binding, [shown, *entry[2]])
            elif shown not in entry[2]:
                entry[2].append(shown)
        commands: list[tuple[str, str, Callable[[], Any]]] = []
        for node, binding, keys in found.values():
            text = f"{binding.description or binding.action}  ({' '.join(keys)})"
            commands.append((text, binding.tooltip, partial(self.app.run_action, binding.action, node)))
        return commands

    def _ours(self, node: DOMNode, action: str) -> bool:
        """Whether the dashboard defines the action (Textual's own, such as scrolling sideways, are left out)."""
        namespace, name, _ = parse(action)
        target = {"app": self.app, "screen": self.screen}.get(namespace, node)
        method = getattr(type(target), f"action_{name}", None)
        return method is not None and method.__module__.startswith("tokenflow_tui.")

    async def discover(self) -> Hits:
        for text, help_text, run in self._commands():
            yield DiscoveryHit(text, run, help=help_text or None)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        for text, help_text, run in self._commands():
            score = matcher.match(f"{text} {help_text}")
            if score > 0:
                yield Hit(score, matcher.highlight(text), run, text=text, help=help_text or None)
