"""Run every benchmark in turn (``make bench``); each prints its own table.

HTTP needs wrk (Debian package) and builds bench/.venv with Starlette, FastAPI and
Litestar from PyPI on first run; scale-out needs PostgreSQL, NATS and Redis and
reports what it had to skip. Pass --quick for short runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "bench_http.py": [],
    "bench_bus.py": [],
    "bench_db.py": [],
    "bench_outbox.py": [],
    "bench_reload.py": [],
    "bench_scaleout.py": [],
    "bench_tracing.py": [],
    "bench_scheduler.py": [],
}
QUICK = {
    "bench_http.py": ["--rounds", "1", "--duration", "3"],
    "bench_bus.py": ["--events", "20000", "--requests", "3000", "--rounds", "1"],
    "bench_db.py": ["--repeat", "1"],
    "bench_outbox.py": ["--requests", "500", "--repeat", "1"],
    "bench_reload.py": ["--edits", "10"],
    "bench_scaleout.py": ["--rounds", "1", "--duration", "3"],
    "bench_tracing.py": ["--requests", "1000", "--rounds", "1"],
    "bench_scheduler.py": ["--seconds", "10"],
}


def main() -> int:
    plan = QUICK if "--quick" in sys.argv[1:] else FULL
    failed = []
    for script, args in plan.items():
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        if subprocess.call([sys.executable, str(HERE / script), *args]) != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
