"""Shared by the server tests: one tiny random model per test module (a real engine, built in seconds)."""

import pytest

from stepjudge.engines.hf import HFEngine


@pytest.fixture(scope="module")
def engine() -> HFEngine:
    return HFEngine("tiny-random")
