"""Shared by the benchmark scripts: result tables, percentiles, a wrk script."""

from __future__ import annotations

UNIQUE_PRODUCTS_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, "/products", nil, '{"name": "pen ' .. counter .. '", "price": 2.5}')
end
"""
"""wrk's script for ``POST /products`` with a new product name on every request."""


def table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    head = line(header)
    return "\n".join([title, head, "-" * len(head), *(line(row) for row in rows)]) + "\n"


def percentile_us(seconds: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of durations in seconds, in microseconds."""
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6
