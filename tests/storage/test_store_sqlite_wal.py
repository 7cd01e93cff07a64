"""SQLiteStore keeps its write-ahead log small: thousands of writes, from one process and from several.

SQLite checkpoints the log but never shrinks the file by itself; left alone it stays at
its largest (4 MB from one process), and while other processes keep reading and writing
it can grow with every write.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

from bastion.storage import SQLiteStore

#: A small limit, so a few thousand writes cross it many times (the default is 4 MiB).
WAL_SIZE_LIMIT = 256 * 1024
#: What the log may reach between two checkpoints in one process (a write past the limit empties it).
BOUND = 2 * WAL_SIZE_LIMIT
#: What it may reach while other processes keep the checkpoints busy.
BUSY_BOUND = 16 * WAL_SIZE_LIMIT


def wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def value(writer: str, i: int) -> bytes:
    return f"{writer}:{i}:".encode() * 12


async def test_thousands_of_writes_leave_a_small_log_and_every_record(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    sizes = []
    async with SQLiteStore(path, wal_size_limit=WAL_SIZE_LIMIT) as store:
        for i in range(5000):
            await store.put("clients", f"c{i}", value("one", i), ttl=3600, index=f"user{i % 40}")
            if i % 100 == 99:
                sizes.append(wal_size(path))
        assert max(sizes) <= BOUND, sizes
        for i in range(5000):
            assert await store.get("clients", f"c{i}") == value("one", i)
        assert len(await store.scan("clients", "user7")) == 125


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from bastion.storage import SQLiteStore

    async def main() -> None:
        path, me, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
        wal = path.with_name(path.name + "-wal")
        peak = 0
        async with SQLiteStore(path, wal_size_limit=int(sys.argv[4])) as store:
            for i in range(count):
                await store.put("grants", f"{me}-{i}", f"{me}:{i}:".encode() * 12, ttl=3600)
                if i % 100 == 99 and wal.exists():
                    peak = max(peak, wal.stat().st_size)
        print(peak, flush=True)

    asyncio.run(main())
    """
)


async def test_several_processes_writing_at_once_leave_a_small_log_and_every_record(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    writers, count = ["p0", "p1", "p2"], 1500
    # Held open throughout, as a server's own store would be: the log is not removed at the end.
    async with SQLiteStore(path, wal_size_limit=WAL_SIZE_LIMIT) as store:
        await store.put("grants", "first", b"x")
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _WRITER,
                str(path),
                me,
                str(count),
                str(WAL_SIZE_LIMIT),
                stdout=asyncio.subprocess.PIPE,
            )
            for me in writers
        ]
        peaks = []
        for proc in procs:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
            assert proc.returncode == 0
            peaks.append(int(out))
        # While three processes write at full speed a checkpoint is often busy, so the log may
        # pass the limit for a while (before, it grew with every write: tens of MB here).
        assert max(peaks) <= BUSY_BOUND, peaks
        # Once they are done, the next write empties it (before, it kept its largest size).
        await store.put("grants", "last", b"x")
        assert wal_size(path) <= WAL_SIZE_LIMIT
        for me in writers:
            for i in range(count):
                assert await store.get("grants", f"{me}-{i}") == value(me, i)
