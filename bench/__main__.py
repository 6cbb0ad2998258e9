"""``python -m bench``: graphrunner against hand-written temporalio on one dev server."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys

from temporalio.client import WorkflowFailureError

from bench.harness import ACTIVITY_SLOTS, Config, run
from bench.report import print_json, print_tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark graphrunner against a hand-written temporalio workflow.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 45 s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 if an aim is missed"
    )
    parser.add_argument("--steps", type=int, help="Task+Plan steps per latency lifetime")
    parser.add_argument("--reps", type=int, help="lifetimes per side for each latency figure")
    parser.add_argument("--lifetimes", type=int, help="concurrent lifetimes per throughput batch")
    parser.add_argument(
        "--record-batches",
        type=int,
        dest="record_batches",
        help="throughput batches per recording side (1 by default)",
    )
    parser.add_argument(
        "--guard-reps",
        type=int,
        dest="guard_reps",
        help="lifetimes per side in the guardrail section (9 by default)",
    )
    parser.add_argument(
        "--idle-lifetimes",
        type=int,
        dest="idle_lifetimes",
        help=f"lifetimes per side waiting at once in the idle-memory section (90 by default, "
        f"at most {ACTIVITY_SLOTS}, the workers' activity slots)",
    )
    parser.add_argument(
        "--waiting-lifetimes",
        type=int,
        dest="waiting_lifetimes",
        help="lifetimes per side waiting for a person at once on one worker (1,000 by default, "
        "100 with --quick; 10,000 takes about 10 minutes per side on a 2-core box)",
    )
    parser.add_argument(
        "--long-iterations",
        type=int,
        dest="long_iterations",
        help="iterations of the long-loop lifetime per side, which continues as new when "
        "Temporal suggests it (5,000 by default, 1,000 with --quick; 0: no long loop)",
    )
    parser.add_argument(
        "--budget", type=float, dest="budget_s", help="seconds all measurements may take"
    )
    args = parser.parse_args(argv)
    if args.idle_lifetimes is not None and not 1 <= args.idle_lifetimes <= ACTIVITY_SLOTS:
        # More could not all run their node at once, and the section would wait for ever.
        parser.error(f"--idle-lifetimes must be between 1 and {ACTIVITY_SLOTS}")
    if args.waiting_lifetimes is not None and args.waiting_lifetimes < 1:
        parser.error("--waiting-lifetimes must be at least 1")
    if args.long_iterations is not None and args.long_iterations < 0:
        parser.error("--long-iterations must be at least 0")

    cfg = Config.quick() if args.quick else Config()
    names = (
        "steps",
        "reps",
        "lifetimes",
        "record_batches",
        "guard_reps",
        "idle_lifetimes",
        "waiting_lifetimes",
        "long_iterations",
        "budget_s",
    )
    overrides = {k: getattr(args, k) for k in names}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    try:
        report = asyncio.run(run(cfg))
    except WorkflowFailureError as err:
        # A benchmark lifetime failed: say why in one line rather than with a traceback.
        cause: BaseException | None = err.cause
        while cause is not None and cause.__cause__ is not None:
            cause = cause.__cause__
        print(f"bench: a lifetime failed: {cause or err}", file=sys.stderr)
        return 2
    except TimeoutError:
        print(
            "bench: lifetimes did not finish within 180 s (the long loop: 0.1 s an iteration); "
            "is a worker stuck?",
            file=sys.stderr,
        )
        return 2
    if args.json:
        print_json(report)
    else:
        print_tables(report)
    missed = any(m.met is False for m in report.measurements)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
