"""Benchmark: Kafka -> bronze throughput on this machine. Prints its figures.

    .venv/bin/python benchmarks/bench_bronze.py [--count 200000] [--max-per-batch 50000]

Starts its own embedded broker and warehouse in a temp directory, produces COUNT order
events, runs bronze until idle in-process and reports produce rate, per-batch and
overall rows per second (JVM start excluded and included).
"""

from __future__ import annotations

import argparse
import re
import time

from _setup import bench_environment  # benchmarks/ is on sys.path when run as a script

from lakehouse.generator import generate
from lakehouse.io.kafka_producer import produce
from lakehouse.runner import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--max-per-batch", type=int, default=50_000)
    args = parser.parse_args()
    with bench_environment(args.max_per_batch) as config:
        t0 = time.monotonic()
        produce(config.kafka.bootstrap_servers, "bench.orders", generate("orders", args.count, 1))
        produced = time.monotonic() - t0
        lines: list[str] = []

        def capture(line: str) -> None:
            lines.append(line)
            print(line, flush=True)

        t1 = time.monotonic()
        run(config, until_idle=True, tables=["bronze.orders"], printer=capture)
        total = time.monotonic() - t1
    batch_secs = [float(m.group(1)) for ln in lines if (m := re.search(r" in ([0-9.]+)s", ln))]
    print("\n== bronze benchmark ==")
    print(f"events:                     {args.count:,} (max {args.max_per_batch:,} per batch)")
    print(f"produce (idempotent, lz4):  {produced:.1f}s = {args.count / produced:,.0f} events/s")
    print(f"bronze batches:             {len(batch_secs)}, writer time {sum(batch_secs):.1f}s")
    print(f"bronze run incl. JVM start: {total:.1f}s = {args.count / total:,.0f} rows/s")


if __name__ == "__main__":
    main()
