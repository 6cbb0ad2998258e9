"""Worker start cost with and without litellm: import time and idle RSS of a fresh process.

Each run is a new interpreter that imports what a worker process imports (graphrunner's
worker, client and CLI), builds a worker's LLM runtime, and, with ``--litellm``, sets litellm
up as the first model call does. Prints the median of ``--runs`` runs.

    .venv/bin/python bench/llm_startup.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time
began = time.perf_counter()
import graphrunner.worker, graphrunner.client._cli
from graphrunner.llm import LlmRuntime
LlmRuntime()
imported = time.perf_counter()
if sys.argv[1] == "1":
    from graphrunner.llm._litellm import litellm
    litellm()
done = time.perf_counter()
rss = next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]
print(json.dumps({"worker_s": imported - began, "total_s": done - began,
                  "rss_mib": int(rss) / 1024}))
"""


def measure(with_litellm: bool, runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, "1" if with_litellm else "0"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        samples.append(json.loads(out.strip().splitlines()[-1]))
    return {k: round(statistics.median(s[k] for s in samples), 2) for k in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for with_litellm in (False, True):
        label = "with litellm" if with_litellm else "without litellm"
        print(label, measure(with_litellm, args.runs))


if __name__ == "__main__":
    main()
