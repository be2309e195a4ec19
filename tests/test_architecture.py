"""The engine imports no UI and no HTTP client (DESIGN §4)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import tokenflow_tui.engine

ENGINE_MODULES = sorted(f"tokenflow_tui.engine.{m.name}" for m in pkgutil.iter_modules(tokenflow_tui.engine.__path__))
FORBIDDEN = ("textual", "httpx", "aiohttp", "orjson", "tomllib", "tomli_w", "json")


def test_engine_modules_are_found():
    assert "tokenflow_tui.engine.task" in ENGINE_MODULES


@pytest.mark.parametrize("module", ["tokenflow_tui.engine", "tokenflow", *ENGINE_MODULES])
def test_engine_module_imports_no_ui_http_or_file_format(module):
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        f"print(','.join(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
