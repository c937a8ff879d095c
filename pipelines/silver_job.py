"""spark-submit entry point: build the silver tables from bronze, streaming.

    spark-submit --py-files dist/lakehouse.zip pipelines/silver_job.py \\
        --conf conf/cluster.yaml [--until-idle] [--table orders]

Runs the silver queries of ``lakehouse run`` (contracts, expectations, dedup, quarantine)
as their own job, so bronze and silver restart and scale independently.
"""

from __future__ import annotations

import sys

from pipelines._job import main

if __name__ == "__main__":
    sys.exit(main("silver", __doc__ or ""))
