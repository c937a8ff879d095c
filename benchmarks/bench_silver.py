"""Benchmark: bronze -> silver throughput on this machine. Prints its figures.

    .venv/bin/python benchmarks/bench_silver.py [--count 200000] [--max-per-batch 50000]

Starts its own embedded broker and warehouse in a temp directory, produces COUNT order
events (10% faults: duplicates, malformed, wrong types, out of range, ...), lands them in
bronze, then runs silver alone until idle on the same SparkSession and reports, per
silver batch, the time spent parsing, evaluating the compiled rules and deduplicating, in
Great Expectations validation, and in total, plus overall rows per second.
"""

from __future__ import annotations

import argparse
import re
import time

from _setup import bench_environment  # benchmarks/ is on sys.path when run as a script

from lakehouse.generator import generate
from lakehouse.io.kafka_producer import produce
from lakehouse.registry import discover_silver
from lakehouse.runner import run
from lakehouse.silver import accounting
from lakehouse.spark import build_session

LINE = re.compile(r"batch (\d+): ([0-9,]+) read .* in ([0-9.]+)s \(parse\+rules\+dedup "
                  r"([0-9.]+)s, GX ([0-9.]+)s\)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--max-per-batch", type=int, default=50_000)
    args = parser.parse_args()
    lines: list[str] = []

    def capture(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    with bench_environment(args.max_per_batch) as config:
        spark = build_session(config)
        try:
            produce(config.kafka.bootstrap_servers, "bench.orders",
                    generate("orders", args.count, 1, faults=0.1))
            run(config, until_idle=True, tables=["bronze.orders"], spark=spark, printer=print)
            t0 = time.monotonic()
            run(config, until_idle=True, tables=["silver.orders"], spark=spark, printer=capture)
            total = time.monotonic() - t0
            acc = accounting(config, next(t for t in discover_silver() if t.name == "orders"))
        finally:
            spark.stop()
    batches = [(int(m.group(2).replace(",", "")), float(m.group(3)), float(m.group(4)),
                float(m.group(5))) for ln in lines if (m := LINE.search(ln))]
    steady = batches[1:] or batches
    rows = sum(b[0] for b in steady)
    secs = sum(b[1] for b in steady)
    print("\n== silver benchmark ==")
    print(f"bronze records:                {args.count:,} (max {args.max_per_batch:,} per batch)")
    print(f"silver batches:                {len(batches)}")
    for n, (read, took, parse, gx) in enumerate(batches):
        print(f"  batch {n}: {read:,} rows in {took:.2f}s (parse+rules+dedup {parse:.2f}s, "
              f"GX validation {gx:.2f}s, writes {took - parse - gx:.2f}s)")
    print(f"steady state (after batch 0): {rows / secs:,.0f} rows/s")
    print(f"GX validation per batch:       "
          f"{sum(b[3] for b in steady) / len(steady):.2f}s (steady state)")
    print(f"silver run (session reused):   {total:.1f}s = {args.count / total:,.0f} rows/s")
    print(f"accounting:                    {acc.describe()}")


if __name__ == "__main__":
    main()
