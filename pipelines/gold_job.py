"""spark-submit entry point: keep the gold tables up to date from silver, streaming.

    spark-submit --py-files dist/lakehouse.zip pipelines/gold_job.py \\
        --conf conf/cluster.yaml [--until-idle] [--table revenue_by_category_5m]

Runs the gold queries of ``lakehouse run`` (incremental aggregates merged by key) as
their own job, so gold restarts and scales independently of bronze and silver.
"""

from __future__ import annotations

import sys

from pipelines._job import main

if __name__ == "__main__":
    sys.exit(main("gold", __doc__ or ""))
