"""The per-call cost of `code.python` (spawn to result) for a trivial `main`, measured.

Run with `-s` to see the figures; `docs/pieces/code-python.md` quotes them. The bound asserted
here is loose (a loaded CI machine) and only catches a gross regression.
"""

from __future__ import annotations

import statistics
import time

from tests.pieces.code.conftest import RunCode

TRIVIAL = "def main(inputs):\n    return inputs['n'] + 1\n"
CALLS = 30


async def test_overhead_of_a_trivial_call(run_code: RunCode) -> None:
    assert await run_code(TRIVIAL, {"n": 0}) == 1  # the probe runs (once per process) here
    samples = []
    for n in range(CALLS):
        started = time.perf_counter()
        assert await run_code(TRIVIAL, {"n": n}) == n + 1
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    median = statistics.median(samples)
    p90 = samples[int(len(samples) * 0.9) - 1]
    print(
        f"\ncode.python trivial call over {CALLS} calls: median {median:.1f} ms, "
        f"p90 {p90:.1f} ms, min {samples[0]:.1f} ms, max {samples[-1]:.1f} ms"
    )
    assert median < 250
