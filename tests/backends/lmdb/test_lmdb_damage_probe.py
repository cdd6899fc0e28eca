"""The damage probe of ``benchmarks/probe_store.py``, short: random flipped bytes in a copy of
a real store are reported as damage (or change nothing), never answered wrongly.

The script runs 200 flips (``python benchmarks/probe_store.py``); this test runs 40.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("lmdb")
pytest.importorskip("fsspec")

SCRIPT = Path(__file__).parents[3] / "benchmarks" / "probe_store.py"


def load_probe():
    spec = importlib.util.spec_from_file_location("probe_store", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_random_flipped_bytes_are_reported_as_damage_never_misreported():
    outcomes = load_probe().probe(flips=40, seed=12)

    assert outcomes["MISREPORT"] == 0
    assert outcomes["CRASH"] == 0 and outcomes["HANG"] == 0
    assert outcomes["reported"] > 0  # the flips did hit what the store reads
    assert outcomes["reported"] + outcomes["unaffected"] == 40
