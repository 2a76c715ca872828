"""Growth exponents: how a figure scales with the number of peers.

A figure y measured at sizes n1 < n2 < ... grows like n**k; k is the slope
of log(y) over log(n). Between two sizes it is exact; over more, the least
squares fit. A figure that is zero or missing at a size has no exponent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def pairwise_exponents(
    sizes: Sequence[float], values: Sequence[float | None]
) -> list[float | None]:
    """log-log slope between each pair of consecutive sizes."""
    if len(sizes) != len(values):
        raise ValueError(f"{len(sizes)} sizes but {len(values)} values")
    out: list[float | None] = []
    for (n1, y1), (n2, y2) in zip(
        zip(sizes, values, strict=True), zip(sizes[1:], values[1:], strict=True)
    ):
        if y1 is None or y2 is None or y1 <= 0 or y2 <= 0 or n1 <= 0 or n2 == n1:
            out.append(None)
        else:
            out.append(math.log(y2 / y1) / math.log(n2 / n1))
    return out


def fitted_exponent(
    sizes: Sequence[float], values: Sequence[float | None]
) -> float | None:
    """Least-squares log-log slope over every size with a positive value."""
    if len(sizes) != len(values):
        raise ValueError(f"{len(sizes)} sizes but {len(values)} values")
    points = [
        (math.log(n), math.log(y))
        for n, y in zip(sizes, values, strict=True)
        if y is not None and y > 0 and n > 0
    ]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx
