"""One benchmark task in its own process (its own JVM): `python -m bench.worker TASK PARAMS_JSON`.
Prints the task's result as JSON on the last line of stdout."""

from __future__ import annotations

import json
import sys

from bench.tasks import TASKS
from lakehouse.config import Config
from lakehouse.spark import get_spark


def main() -> int:
    task, params = sys.argv[1], json.loads(sys.argv[2])
    spark = get_spark(Config())  # started before any timer: JVM start-up is never in a figure
    result = TASKS[task](spark, **params)
    print(json.dumps(result))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
