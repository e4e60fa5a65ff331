"""`python -m bench [overhead] [validation] [parallel] [latency] [api] [hooks]`: run benchmarks
(default: all)."""

from __future__ import annotations

import sys

NEEDS_SERVER = {"overhead", "parallel", "latency", "api", "hooks"}


def main(argv: list[str]) -> None:
    chosen = argv or ["validation", "overhead", "parallel", "latency", "api", "hooks"]
    from bench.server import prefect_server

    if not NEEDS_SERVER & set(chosen):
        _run(chosen)
        return
    with prefect_server():
        _run(chosen)


def _run(chosen: list[str]) -> None:
    # Imported only now: Prefect reads PREFECT_API_URL when it is first imported, and the
    # server's address is known only once it has started.
    from bench import api, hooks, latency, overhead, parallel, validation

    modules = {
        "overhead": overhead,
        "validation": validation,
        "parallel": parallel,
        "latency": latency,
        "api": api,
        "hooks": hooks,
    }
    for name in chosen:
        modules[name].main()


if __name__ == "__main__":
    main(sys.argv[1:])
