"""MLPerf inference facts every floor reads: the scenario table, fidelities, run rules.

One place for them: the oracle (how LoadGen is configured), measure (how the SUT answers),
the driver (which way an objective points), promote (what an edge system may infer), the
packer and the checker (which detail-log key is the headline) all read this table.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    headline_key: str  # detail-log key of the figure MLPerf's results table shows
    headline_scale: float  # divide the key's value by this to get `unit`
    unit: str  # "ms" or "samples/s"
    metric: str  # what the results table calls the figure
    throughput: bool  # the headline is samples/s (up) rather than a latency (down)
    threaded: bool  # the SUT answers on a worker thread (LoadGen must never block)
    samples_per_query: int
    early_stopping_min_queries: int  # queries early stopping needs (0: no early stopping)
    latency_key: str  # the latency recorded for the scenario (headline for latency ones)

    @property
    def objective(self) -> str:
        """The speed column a study of this scenario optimises."""
        return "qps" if self.throughput else "latency_ms"


MULTISTREAM_SAMPLES_PER_QUERY = 8  # LoadGen's default for image classification

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("SingleStream", "early_stopping_latency_ss", 1e6, "ms",
             "90th percentile latency (early stopping)", throughput=False, threaded=False,
             samples_per_query=1, early_stopping_min_queries=64,
             latency_key="early_stopping_latency_ss"),
    Scenario("MultiStream", "early_stopping_latency_ms", 1e6, "ms",
             "99th percentile latency (early stopping)", throughput=False, threaded=False,
             samples_per_query=MULTISTREAM_SAMPLES_PER_QUERY, early_stopping_min_queries=662,
             latency_key="early_stopping_latency_ms"),
    Scenario("Offline", "result_samples_per_second", 1.0, "samples/s", "throughput",
             throughput=True, threaded=True, samples_per_query=1,
             early_stopping_min_queries=0, latency_key="result_90.00_percentile_latency_ns"),
    Scenario("Server", "result_completed_samples_per_sec", 1.0, "samples/s", "throughput",
             throughput=True, threaded=True, samples_per_query=1,
             early_stopping_min_queries=1024,
             latency_key="result_99.00_percentile_latency_ns"),
)}
SCENARIO_NAMES = tuple(SCENARIOS)


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown LoadGen scenario {name!r}; one of "
                         f"{', '.join(SCENARIO_NAMES)}") from None


# MLPerf categories: what a system measures, and what an edge system may infer from a
# measured scenario (MLCommons' preprocess_submission.py; datacenter systems may not).
MEASURED = {"edge": ("SingleStream",), "datacenter": ("Offline", "Server")}
CATEGORY_SCENARIOS = {"edge": ("SingleStream", "MultiStream", "Offline"),
                      "datacenter": ("Offline", "Server")}
# target -> the measured scenarios it may be inferred from, in order of preference
INFERRED_FROM = {"MultiStream": ("SingleStream",), "Offline": ("MultiStream", "SingleStream")}
INFERABLE = frozenset((src, dst) for dst, srcs in INFERRED_FROM.items() for src in srcs)

# A compliant performance run: LoadGen's own rules, whose minimum duration is 600 s.
COMPLIANT_MIN_DURATION_MS = 600_000

# Where a record's figures come from (the `fidelity` column of trials.parquet).
SHORT = "short"  # a short LoadGen run on a device (the search)
COMPLIANT = "compliant"  # a full LoadGen run (600 s, official seeds, whole accuracy set)
REDUCED = "compliant-reduced"  # a promotion run shortened by a test setting
REPRODUCE = "reproduce"  # a re-measurement of a record, evidence of run-to-run spread
PUBLISHED = "published"  # imported from a published MLPerf results tree
REPLAY = "replay"  # answered from a table of earlier records, no device involved
SIMULATED = "simulated"  # a simulated device under test (benchmarks), never a measurement
PROMOTED = (COMPLIANT, REDUCED)
PACKABLE = (COMPLIANT,)  # REDUCED packs only into a --draft tree
MEASURED_FIDELITIES = (SHORT, COMPLIANT, REDUCED, REPRODUCE)  # measured by us on a device


def scenario_from_folder(folder: str) -> str | None:
    """A results tree's scenario folder as a scenario name: lower case in early rounds
    (``singlestream``), CamelCase later (``SingleStream``); None for anything else."""
    return {s.lower(): s for s in SCENARIO_NAMES}.get(folder.lower())
