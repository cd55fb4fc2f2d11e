"""The reference peer of bench/run: Debian's python3-asyncpg (on uvloop when python3-uvloop
is importable) running W1-W4 against the same server, and printing the line bench/run
parses, as the bench/*.lua clients do:
  BENCH <workload> <client> <ops> <wall_seconds> <cpu_seconds>
Wall time is time.monotonic(), CPU time time.process_time() (user + system of this
process), both taken after connect and warm-up.
  W1  serial `SELECT $1` on 1 connection (the value sent as text: an untyped $1 is text,
      as in pgbench's script); ops = queries
  W2  64 tasks on asyncpg.create_pool(min_size=8, max_size=8), `SELECT $1` each; ops = queries
  W3  conn.fetch() of all rows of t100k (Record rows), again and again; ops = rows
  W4  BEGIN; UPDATE t100k ...; SELECT score ...; COMMIT (conn.transaction()) with random ids
      from 8 tasks, one connection each; ops = transactions
asyncpg prepares every statement it runs and keeps it in its per-connection statement cache.
Usage: /usr/bin/python3 bench/asyncpg_bench.py SECONDS W1|W2|W3|W4   (MOMOKO_DSN: a libpq
key=value DSN without quoting, as bench/run sets it)
"""
import asyncio
import os
import random
import sys
import time

import asyncpg

try:
    import uvloop
except ImportError:
    uvloop = None

CLIENT = "asyncpg+uvloop" if uvloop else "asyncpg"
SQL_FETCH = "SELECT id, name, score, created FROM t100k"
SQL_UPDATE = "UPDATE t100k SET score = score + 1 WHERE id = $1"
SQL_SELECT = "SELECT score FROM t100k WHERE id = $1"


def connect_args(dsn):
    """asyncpg.connect keyword arguments for a `key=value ...` DSN."""
    names = {"host": "host", "port": "port", "dbname": "database", "user": "user",
             "password": "password"}
    args = {}
    for word in dsn.split():
        key, _, value = word.partition("=")
        if key in names:
            args[names[key]] = int(value) if key == "port" else value
        elif key == "sslmode":
            args["ssl"] = value not in ("disable", "allow", "prefer")
    return args


class Meter:
    def __init__(self, workload):
        self.workload = workload

    def start(self):
        self.t0, self.c0 = time.monotonic(), time.process_time()

    def stop(self, ops):
        wall, cpu = time.monotonic() - self.t0, time.process_time() - self.c0
        print(f"BENCH {self.workload} {CLIENT} {ops} {wall:.6f} {cpu:.3f}", flush=True)


async def w1(seconds, args):
    conn = await asyncpg.connect(**args)
    for i in range(1, 2001):  # warm-up
        await conn.fetchval("SELECT $1", str(i))
    m, n = Meter("W1"), 0
    m.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(500):
            n += 1
            v = await conn.fetchval("SELECT $1", str(n))
            if v != str(n):
                raise RuntimeError(f"W1: got {v!r}, want {n}")
    m.stop(n)
    await conn.close()


async def w2(seconds, args):
    pool = await asyncpg.create_pool(min_size=8, max_size=8, **args)
    for i in range(1, 1001):  # warm-up
        await pool.fetchval("SELECT $1", str(i))
    done = 0
    deadline = 0.0

    async def worker(task):
        nonlocal done
        k = task * 10000000
        while time.monotonic() < deadline:
            for _ in range(100):
                k += 1
                v = await pool.fetchval("SELECT $1", str(k))
                if v != str(k):
                    raise RuntimeError(f"W2: got {v!r}, want {k}")
            done += 100

    m = Meter("W2")
    m.start()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(worker(t) for t in range(1, 65)))
    m.stop(done)
    await pool.close()


async def w3(seconds, args):
    conn = await asyncpg.connect(**args)
    rows = await conn.fetch(SQL_FETCH)  # warm-up
    if len(rows) != 100000 or rows[-1]["id"] != 100000:
        raise RuntimeError(f"W3: {len(rows)} rows")
    del rows
    m, n = Meter("W3"), 0
    m.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n += len(await conn.fetch(SQL_FETCH))
    m.stop(n)
    await conn.close()


async def w4(seconds, args):
    conns = [await asyncpg.connect(**args) for _ in range(8)]

    async def tx(conn, i):
        async with conn.transaction():
            await conn.execute(SQL_UPDATE, i)
            if await conn.fetchval(SQL_SELECT, i) is None:
                raise RuntimeError(f"W4: no row {i}")

    for c in conns:  # warm-up: 200 transactions in all
        for _ in range(25):
            await tx(c, random.randint(1, 100000))
    done = 0
    deadline = 0.0

    async def worker(conn):
        nonlocal done
        while time.monotonic() < deadline:
            for _ in range(20):
                await tx(conn, random.randint(1, 100000))
            done += 20

    m = Meter("W4")
    m.start()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(worker(c) for c in conns))
    m.stop(done)
    for c in conns:
        await c.close()


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("W1", "W2", "W3", "W4"):
        sys.exit("usage: python3 bench/asyncpg_bench.py SECONDS W1|W2|W3|W4")
    seconds = float(sys.argv[1])
    dsn = os.environ.get("MOMOKO_DSN") or os.environ.get("MOMOKO_TEST_DSN") or ""
    run = {"W1": w1, "W2": w2, "W3": w3, "W4": w4}[sys.argv[2]]
    if uvloop:
        uvloop.install()
    asyncio.run(run(seconds, connect_args(dsn)))


if __name__ == "__main__":
    main()
