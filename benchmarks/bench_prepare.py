"""Time `prepare` of Amazon Beauty from the P5/S3Rec files (read + leave-one-out + save in the Hub layout).

    python benchmarks/bench_prepare.py [--data ../shared/data/amazon_beauty] [--repeats 3]

Writes benchmarks/results/bench_prepare.json. Target: under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from lamar_hf.data import read_p5

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "amazon_beauty")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_prepare.json")
    args = parser.parse_args()
    seconds = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            benchmark = read_p5(args.data)
            benchmark.save(Path(tmp) / "beauty")
            seconds.append(time.perf_counter() - started)
    result = {
        "benchmark": "prepare amazon_beauty (p5 files): read, leave-one-out, save parquet",
        "seconds_median": statistics.median(seconds),
        "seconds_all": seconds,
        "target_seconds": 30,
        "statistics": benchmark.statistics(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"prepare amazon_beauty: median {result['seconds_median']:.2f} s over {args.repeats} runs (target < 30 s) -> {args.out}")


if __name__ == "__main__":
    main()
