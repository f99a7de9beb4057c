"""Expression engine costs: engine creation, a small evaluate, and item throughput.

Prints the median of several repetitions for each case, without and with Luxon loaded.

    .venv/bin/python bench/expressions.py [--items 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from klikkflow.engine.expressions import ExpressionEngine  # noqa: E402

WORKFLOW = {"id": "wf-bench", "name": "Bench", "active": True}
SET_VALUES = {
    "total": "={{ $json.body.qty * $json.body.price }}",
    "name": "={{ $json.body.name.toUpperCase() }}",
    "tags": "={{ $json.body.tags.length }}",
}


def _engine() -> ExpressionEngine:
    return ExpressionEngine(execution_id="bench", workflow=WORKFLOW)


def _items(n: int) -> list[dict[str, Any]]:
    return [
        {
            "json": {
                "body": {
                    "name": f"user {i}",
                    "qty": i % 7,
                    "price": 1.5 + i % 3,
                    "tags": ["a", "b"],
                }
            }
        }
        for i in range(n)
    ]


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _evaluate(engine: ExpressionEngine, value: Any, items: list[dict[str, Any]]) -> list[Any]:
    return engine.evaluate(value, items, node_name="Set", parameter_path="value")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    items, one = _items(args.items), _items(1)
    qty_price = "={{ $json.body.qty * $json.body.price }}"

    def report(label: str, seconds: float, count: int | None = None) -> None:
        rate = f"  {count / seconds:>12,.0f} items/s" if count else ""
        print(f"{label:<52} {seconds * 1e6:>12,.1f} µs{rate}")  # noqa: T201

    report("fresh engine", _median(lambda: _engine().close(), args.repeat * 20))
    engine = _engine()
    _evaluate(engine, qty_price, one)
    report(
        "small evaluate (1 item, cached template)",
        _median(lambda: _evaluate(engine, qty_price, one), 200),
    )
    report(
        "first evaluate of a new template",
        _median(lambda: _evaluate(_engine(), qty_price, one), 50),
    )
    report(
        f"qty*price over {args.items:,} items",
        _median(lambda: _evaluate(engine, qty_price, items), args.repeat),
        args.items,
    )
    report(
        f"3 expressions in one tree over {args.items:,} items",
        _median(lambda: _evaluate(engine, SET_VALUES, items), args.repeat),
        args.items,
    )

    report(
        "fresh engine + Luxon load ({{ $now }})",
        _median(lambda: _evaluate(_engine(), "{{ $now }}", one), 20),
    )
    luxon = _engine()
    _evaluate(luxon, "{{ $today.toISODate() }}", one)
    report(
        f"qty*price over {args.items:,} items, Luxon loaded",
        _median(lambda: _evaluate(luxon, qty_price, items), args.repeat),
        args.items,
    )
    report(
        f"$now.plus({{days: qty}}).toISODate() over {args.items // 10:,} items",
        _median(
            lambda: _evaluate(
                luxon,
                "{{ $now.plus({days: $json.body.qty}).toISODate() }}",
                items[: args.items // 10],
            ),
            args.repeat,
        ),
        args.items // 10,
    )


if __name__ == "__main__":
    main()
