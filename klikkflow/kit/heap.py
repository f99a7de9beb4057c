"""Garbage collector settings for the long-running processes (services, workers)."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # CPython's default is 700
_settled = False


def settle() -> None:
    """Call once a process has started (modules imported, stores connected). What exists
    then lives as long as the process, so the collector stops scanning it (gc.freeze),
    and young objects are collected every YOUNG_THRESHOLD allocations instead of 700: a
    job or a request allocates thousands, and most of them die young anyway. Measured on
    the worker under bench/e2e.py's bench-a: about 8% less CPU per execution. Once per
    process (a test process starts many apps: later ones freeze nothing more)."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 50, 100)
