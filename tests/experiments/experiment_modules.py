"""The experiment scripts live in ``experiments/`` (not a package): tests import them by name."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def import_experiment(name: str) -> Iterator[ModuleType]:
    """Yield ``experiments/<name>.py`` as a module (for a module-scoped fixture); the path is restored after."""
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(EXPERIMENTS))
