"""MLPerf inference facts every floor reads: the scenario table, fidelities, run rules.

One place for them: the oracle (how LoadGen is configured), measure (how the SUT answers),
the driver (which way an objective points), promote (what an edge system may infer), the
packer and the checker (which detail-log key is the headline) all read this table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple


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


# --------------------------------------------------------------------------- benchmarks
@dataclass(frozen=True)
class Benchmark:
    """One MLPerf benchmark as the v6.1 checker knows it."""

    name: str
    task: str  # classification | detection | recommendation
    accuracy_txt_key: str  # the key of accuracy.txt's metric line: accuracy | mAP | AUC
    performance_sample_count: int | None = None
    dataset_size: int | None = None  # the full accuracy set (a smaller one needs a skip flag)
    server_latency_ns: int | None = None  # the Server scenario's latency bound
    categories: tuple[str, ...] = ("edge", "datacenter")
    # the accuracy.txt figures the checker reads (CHECKER_ACCURACY_LINES), one line each
    checker_lines: tuple[str, ...] = ()


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("resnet", "classification", "accuracy", 1024, 50000, 15_000_000,
              checker_lines=("acc",)),
    Benchmark("retinanet", "detection", "mAP", 64, 24781, 100_000_000, checker_lines=("mAP",)),
    Benchmark("yolo-95", "detection", "mAP", 64, 1525, None, ("edge",), ("mAP",)),
    Benchmark("yolo-99", "detection", "mAP", 64, 1525, None, ("edge",), ("mAP",)),
    # datacenter only; MLPerf's Server bounds: dlrm 30 ms (v0.7-v3.0), dlrm-v2 60 ms. v6.1
    # needs 349,823 performance samples (its whole dataset), where LoadGen 6.0.17's
    # mlperf.conf gives the dlrm rules 204,800: promote refuses before the long runs.
    Benchmark("dlrm-v3", "recommendation", "AUC", 349823, None, 60_000_000, ("datacenter",),
              ("DLRM_NE", "DLRM_ACC", "DLRM_AUC")),
)}
CHECKER_ROUND = "v6.1"  # the official checker version a packed tree is made for
# The lines of accuracy.txt the v6.1 checker reads, by its metric names (its ACC_PATTERN):
# dlrm-v3's are fractions (NE, accuracy at 0.5, grouped AUC), one per line.
CHECKER_ACCURACY_LINES = {
    "acc": r"^accuracy=\s*([\d.]+)", "mAP": r"mAP=\s*([\d.]+)",
    "DLRM_NE": r"metric/lifetime_ne/rating:\s*([\d.]+)",
    "DLRM_ACC": r"metric/lifetime_accuracy/rating:\s*([\d.]+)",
    "DLRM_AUC": r"metric/lifetime_gauc/rating:\s*([\d.]+)"}
# The checker's v6.x benchmark names, and the model-dir aliases it maps without help.
KNOWN_BENCHMARKS = (
    "resnet", "retinanet", "bert-99", "bert-99.9", "3d-unet-99", "3d-unet-99.9",
    "llama3.1-8b", "llama3.1-8b-edge", "llama2-70b-99", "llama2-70b-99.9",
    "stable-diffusion-xl", "mixtral-8x7b", "llama3.1-405b", "rgat", "pointpainting",
    "deepseek-r1", "whisper", "gpt-oss-120b", "wan-2.2-t2v-a14b", "qwen3-vl-235b-a22b",
    "dlrm-v3", "yolo-95", "yolo-99")
CHECKER_ALIASES = {"mobilenet": "resnet", "resnet50": "resnet", "ssd-resnet34": "retinanet"}
# What a LoadGen model name (or a published model folder of an earlier round) is packed
# and compared as today: classification -> resnet, detection -> the edge suite's YOLO,
# recommendation -> dlrm-v3.
CURRENT_BENCHMARK = {
    "resnet50": "resnet", "mobilenet": "resnet", "resnet": "resnet",
    "ssd-mobilenet": "yolo-99", "ssd-small": "yolo-99", "ssd-large": "retinanet",
    "ssd-resnet34": "retinanet", "retinanet": "retinanet", "yolo": "yolo-99",
    "yolo-95": "yolo-95", "yolo-99": "yolo-99",
    "dlrm": "dlrm-v3", "dlrm-99": "dlrm-v3", "dlrm-99.9": "dlrm-v3", "dlrm-v2": "dlrm-v3",
    "dlrm-v2-99": "dlrm-v3", "dlrm-v2-99.9": "dlrm-v3", "dlrm-v3": "dlrm-v3"}
# What a benchmark folder was in the rounds that ran it (a published result is labelled
# as what it was, not as what it is compared as today): DLRM v1 on Criteo Terabyte
# (v0.7-v3.0), DCNv2 multi-hot (v3.1-v5.1), v6's dlrm-v3; SSD-MobileNet-v1 and
# SSD-ResNet34 on COCO (v0.5-v2.0) as v1.0 named them ssd-small and ssd-large.
_ROUND_NAMES = (  # (folder pattern, first round it names, benchmark)
    (r"^dlrm(-99(\.9)?)?$", (0, 0), "dlrm"), (r"^dlrm-99(\.9)?$", (3, 1), "dlrm-v2"),
    (r"^dlrm-v2(-99(\.9)?)?$", (0, 0), "dlrm-v2"), (r"^dlrm-v3$", (0, 0), "dlrm-v3"),
    (r"^ssd-small$|^ssd-mobilenet$", (0, 0), "ssd-mobilenet"),
    (r"^ssd-large$|^ssd-resnet34$", (0, 0), "ssd-resnet34"))


def benchmark_in_round(model: str, round_name: str | None) -> str:
    """The benchmark a published model folder was in its round (``v1.0``): ``dlrm-99`` is
    ``dlrm`` there (v3.1 on, the folder names dlrm-v2); a folder this table does not name
    is what ``current_benchmark`` says."""
    m = re.match(r"^v?(\d+)\.(\d+)", round_name or "")
    rnd = (int(m[1]), int(m[2])) if m else (0, 0)
    named = [(first, name) for pattern, first, name in _ROUND_NAMES
             if re.match(pattern, model) and first <= rnd]
    return max(named)[1] if named else current_benchmark(model)


# The first line of accuracy.txt per metric key, as each task's accuracy script prints it.
# The percent sign is optional where the official checker's pattern has none: v1.0's
# accuracy-dlrm.py printed "AUC=80.26857042258752".
ACCURACY_LINES = {
    "accuracy": r"^accuracy=(\d+\.\d{3})%, good=(\d+), total=(\d+)$",
    "mAP": r"^mAP=(\d+\.\d+)%?",
    "AUC": r"^AUC=(\d+\.\d+)%?",
}


def current_benchmark(model: str, mapping: dict[str, str] | None = None) -> str:
    """The benchmark a LoadGen model name or model folder counts as: the checker's own
    names and aliases first, a model_mapping.json next, then what it is compared as today;
    else the name itself."""
    if model in KNOWN_BENCHMARKS:
        return model
    return CHECKER_ALIASES.get(model) or (mapping or {}).get(model) \
        or CURRENT_BENCHMARK.get(model) or model


def benchmark(name: str) -> Benchmark | None:
    return BENCHMARKS.get(current_benchmark(name))


def checker_lines_problem(accuracy_txt: str, benchmark_name: str) -> str | None:
    """Why the checker would not find the figures it reads for ``benchmark_name`` in an
    accuracy.txt; None when every one of them has its line."""
    facts = BENCHMARKS.get(benchmark_name)
    lines = accuracy_txt.splitlines()
    missing = [key for key in (facts.checker_lines if facts else ()) if not any(
        re.search(CHECKER_ACCURACY_LINES[key], line) for line in lines)]
    return (f"no line the {CHECKER_ROUND} checker reads as {', '.join(missing)} for "
            f"{benchmark_name}") if missing else None


class AccuracyLine(NamedTuple):
    percent: float
    good: int | None  # classification counts samples; mAP and AUC do not
    total: int | None
    key: str  # accuracy | mAP | AUC

    @property
    def metric(self) -> str:
        """The records' name of the metric."""
        return METRIC_OF_KEY[self.key]


METRIC_OF_KEY = {"accuracy": "top1", "mAP": "mAP", "AUC": "AUC"}
_ACCURACY_PATTERNS = {key: re.compile(p) for key, p in ACCURACY_LINES.items()}


def parse_accuracy_txt(text: str) -> AccuracyLine | None:
    """The metric line of an accuracy.txt. Classification's is the first line; mAP and AUC
    lines may follow other output (v1.0's DLRM results print a JSON dump first, whose own
    "accuracy" is not the metric), so those are looked for on every line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        for key in ("mAP", "AUC"):
            m = _ACCURACY_PATTERNS[key].match(line)
            if m:
                return AccuracyLine(float(m.group(1)), None, None, key)
    m = _ACCURACY_PATTERNS["accuracy"].match(lines[0]) if lines else None
    return AccuracyLine(float(m.group(1)), int(m.group(2)), int(m.group(3)), "accuracy") \
        if m else None
