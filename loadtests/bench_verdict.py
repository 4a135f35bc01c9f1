"""The verdict of `make bench`: the run's figures against the thresholds asked for.

    make bench BENCH_ARGS='--min-single-ratio 0.1 --min-batch-ratio 1.0 --max-p99-ms 100'

Each threshold reads one figure of the report (summary.json), measured in the same run
against the same machine's raw PostgreSQL loop (MISSION.md's targets are such ratios):

    --min-single-ratio   transfers run: completed transfers/s ÷ raw PostgreSQL transfers/s
    --min-batch-ratio    batch run: completed transfers/s ÷ raw PostgreSQL transfers/s
    --max-p99-ms         half run (half the most the transfers run sustained): the p99 of
                         the decision latency, from the POST until the decision is known

A threshold whose figure the run did not measure is missed, never passed by default.
Without thresholds there is no verdict and the exit status is 0, as before.
"""
from dataclasses import dataclass

PASSED, MISSED = 0, 3  # the exit statuses: 1 is a crash, 2 a usage error (argparse)


@dataclass(frozen=True)
class Threshold:
    option: str       # the command-line option
    environment: str  # the variable that sets its default
    label: str        # what the verdict line calls the figure
    run: str          # the transfers-only run it reads
    minimum: bool     # True: the figure must be at least the limit; False: at most

    def figure(self, summary):
        """The figure this threshold reads from a report, or None if not measured."""
        figures = ((summary.get("transfers_only") or {}).get("runs") or {}).get(self.run)
        if not figures:
            return None
        if self.minimum:
            return figures.get("vs_raw_postgres")
        return (figures.get("decision_latency_ms") or {}).get("p99")


THRESHOLDS = (
    Threshold("--min-single-ratio", "BENCH_MIN_SINGLE_RATIO",
              "single transfers ÷ raw PostgreSQL", "transfers", True),
    Threshold("--min-batch-ratio", "BENCH_MIN_BATCH_RATIO",
              "batch transfers ÷ raw PostgreSQL", "batch", True),
    Threshold("--max-p99-ms", "BENCH_MAX_P99_MS", "decision p99 ms at half load", "half",
              False),
)


def _attribute(threshold):
    return threshold.option.lstrip("-").replace("-", "_")


def add_arguments(parser, environment):
    group = parser.add_argument_group(
        "thresholds", "the run fails (exit {}) when a figure misses one; each needs its run "
        "in --scenarios and the baselines".format(MISSED))
    helps = {
        "--min-single-ratio": "least completed transfers/s of the transfers run, as a share "
        "of the raw PostgreSQL loop",
        "--min-batch-ratio": "least completed transfers/s of the batch run, as a share of "
        "the raw PostgreSQL loop",
        "--max-p99-ms": "most decision latency p99 (ms) of the half run",
    }
    for threshold in THRESHOLDS:
        group.add_argument(threshold.option, type=float, metavar="N",
                           default=environment(threshold.environment, None,
                                               lambda value: None if value in (None, "")
                                               else float(value)),
                           help="{} ({}; default none)".format(
                               helps[threshold.option], threshold.environment))


def asked(arguments):
    """``[(Threshold, limit)]`` of the thresholds given."""
    return [(threshold, getattr(arguments, _attribute(threshold)))
            for threshold in THRESHOLDS if getattr(arguments, _attribute(threshold)) is not None]


def unmeasurable(arguments, scenarios):
    """Why a threshold asked for cannot be measured by this run (a usage error), or None."""
    for threshold, _ in asked(arguments):
        if threshold.run not in scenarios:
            return "{} needs the {} run in --scenarios".format(threshold.option, threshold.run)
        if threshold.minimum and arguments.skip_baselines:
            return "{} is a ratio to the raw PostgreSQL baseline: drop --skip-baselines".format(
                threshold.option)
    return None


@dataclass(frozen=True)
class Check:
    threshold: Threshold
    limit: float
    figure: float  # None: not measured

    @property
    def passed(self):
        if self.figure is None:
            return False
        return self.figure >= self.limit if self.threshold.minimum else self.figure <= self.limit

    def describe(self):
        if self.figure is None:
            return "{}: not measured (limit {:g})".format(self.threshold.label, self.limit)
        sign = (("≥" if self.passed else "<") if self.threshold.minimum
                else ("≤" if self.passed else ">"))
        return "{} {:g} {} {:g}".format(self.threshold.label, self.figure, sign, self.limit)

    def as_dict(self):
        return {"option": self.threshold.option, "figure": self.figure, "limit": self.limit,
                "passed": self.passed}


def judge(summary, thresholds):
    """``(exit status, verdict line, checks)`` of a report against ``[(Threshold, limit)]``;
    ``(PASSED, None, [])`` when no threshold was asked for."""
    checks = [Check(threshold, limit, threshold.figure(summary))
              for threshold, limit in thresholds]
    if not checks:
        return PASSED, None, []
    missed = [check for check in checks if not check.passed]
    if missed:
        line = "Verdict: FAIL, {} of {} thresholds missed: {}".format(
            len(missed), len(checks), "; ".join(check.describe() for check in missed))
        if len(missed) < len(checks):
            line += " (met: {})".format("; ".join(
                check.describe() for check in checks if check.passed))
        return MISSED, line, checks
    return PASSED, "Verdict: PASS, every threshold met: {}".format(
        "; ".join(check.describe() for check in checks)), checks
