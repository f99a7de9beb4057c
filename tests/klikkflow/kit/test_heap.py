"""heap.settle: a started process's objects leave the collector's scans, once."""

from __future__ import annotations

import subprocess
import sys

from klikkflow.kit.heap import YOUNG_THRESHOLD


def test_settle_freezes_what_exists_and_raises_the_young_threshold_once():
    script = """
import gc
from klikkflow.kit import heap
before = gc.get_freeze_count()
heap.settle()
frozen = gc.get_freeze_count()
keep = [object() for _ in range(1000)]
heap.settle()  # a second app in the same process freezes nothing more
print(before, frozen, gc.get_freeze_count(), gc.get_threshold()[0])
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    before, frozen, again, threshold = map(int, out)
    assert before == 0
    assert frozen > 1000
    assert again == frozen
    assert threshold == YOUNG_THRESHOLD
