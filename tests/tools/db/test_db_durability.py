"""Data safety: a process killed (SIGKILL) mid-stream loses no acknowledged write."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from microcore.testing import start_app

REPO = str(Path(__file__).resolve().parents[3])
FILE_DB = {"DATABASE_URL": "sqlite:///data/app.db"}

# Boots the project with the real kernel and writes through the db tool from three
# concurrent tasks: single inserts, transactions, batches. A tag is printed only
# after the call that wrote it returned: that is the acknowledgement.
WRITER = textwrap.dedent(
    """
    import sys
    import anyio
    from microcore.testing import Kernel

    INSERT = "INSERT INTO acks (tag, pad) VALUES (?, ?)"

    def ack(*tags):
        sys.stdout.write("".join(f"{t}\\n" for t in tags))
        sys.stdout.flush()

    async def main(root, run):
        kernel = Kernel(root, overrides={"DATABASE_URL": "sqlite:///data/app.db",
                                         "LOG_LEVEL": "WARNING"})
        async with kernel.run():
            db = kernel.tool("db")
            await db.execute("CREATE TABLE IF NOT EXISTS acks (id INTEGER PRIMARY KEY, "
                             "tag TEXT NOT NULL UNIQUE, pad TEXT)")
            ack("ready")
            pad = "x" * 200

            async def singles():
                for i in range(10**9):
                    await db.execute(INSERT, (f"{run}s{i}", pad))
                    ack(f"{run}s{i}")

            async def transactions():
                for i in range(10**9):
                    tags = [f"{run}t{i}.{j}" for j in range(3)]
                    async with db.transaction() as tx:
                        for tag in tags:
                            await tx.execute(INSERT, (tag, pad))
                    ack(*tags)

            async def batches():
                for i in range(10**9):
                    tags = [f"{run}b{i}.{j}" for j in range(20)]
                    await db.execute_many(INSERT, [(tag, pad) for tag in tags])
                    ack(*tags)

            async with anyio.create_task_group() as tg:
                tg.start_soon(singles)
                tg.start_soon(transactions)
                tg.start_soon(batches)

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_sigkill_mid_stream_loses_no_acknowledged_insert(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    """Every insert acknowledged before SIGKILL is there after restart; integrity_check is ok."""
    root = make_project({}, tools=["config", "logger", "db"])
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": REPO}
    acknowledged: list[str] = []
    for round_ in range(2):  # the second round writes on top of a recovered database
        stderr = (tmp_path / f"writer{round_}.log").open("wb")
        process = await anyio.open_process(
            [sys.executable, str(script), str(root), str(round_)], stderr=stderr, env=env
        )
        try:
            assert process.stdout is not None
            buffer = b""
            target = len(acknowledged) + 1500
            with anyio.fail_after(30):
                while len(acknowledged) < target:
                    chunk = await process.stdout.receive()
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    acknowledged.extend(t for t in (x.decode() for x in lines) if t != "ready")
            process.send_signal(signal.SIGKILL)  # mid-stream: writes are still in flight
            with anyio.fail_after(10):
                assert await process.wait() == -signal.SIGKILL
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
            stderr.close()

    running = await start_app(root, settings=FILE_DB)
    try:
        db: Any = running.kernel.tool("db")
        assert await db.query_one("PRAGMA integrity_check") == {"integrity_check": "ok"}
        stored = {r["tag"] for r in await db.query("SELECT tag FROM acks")}
        missing = [t for t in acknowledged if t not in stored]
        assert missing == [], f"{len(missing)} acknowledged inserts lost, e.g. {missing[:5]}"
        # Every write path (single, transaction, batch) ran in both rounds.
        assert {t[:2] for t in acknowledged} == {"0s", "0t", "0b", "1s", "1t", "1b"}
    finally:
        await running.stop()
