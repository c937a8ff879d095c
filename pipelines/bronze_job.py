"""spark-submit entry point: land Kafka sources in their bronze Delta tables.

    spark-submit --py-files dist/lakehouse.zip pipelines/bronze_job.py \\
        --conf conf/cluster.yaml [--until-idle] [--table orders]

Runs the bronze queries of ``lakehouse run``; the master and resources come from
spark-submit, everything else from the config file.
"""

from __future__ import annotations

import sys

from pipelines._job import main

if __name__ == "__main__":
    sys.exit(main("bronze", __doc__ or ""))
