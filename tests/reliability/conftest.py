"""Fixtures of the reliability tests: the figures they measure, printed at the end of the session.

Set ZARL_RELIABILITY_FIGURES=path.json to also write them to a file (docs/reliability.md quotes them).
"""
from __future__ import annotations

import json
import os

import pytest

FIGURES: dict[str, object] = {}


@pytest.fixture
def figures() -> dict:
    """Record a measured figure: figures["name"] = value."""
    return FIGURES


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name}: {value}")
    path = os.environ.get("ZARL_RELIABILITY_FIGURES")
    if path:
        with open(path, "w") as f:
            json.dump(FIGURES, f, indent=1)
