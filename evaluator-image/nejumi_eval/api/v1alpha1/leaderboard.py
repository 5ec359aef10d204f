"""The NejumiLeaderboard kind: a leaderboard declared in Git next to the evaluations it ranks.

Its `spec` says which NejumiEvaluations it ranks (a label selector over its namespace, and other
namespaces where the chart's policy allows), which runs count (the protocol group, capped /
synthetic-judge / degraded runs, deleted evaluations whose results are stored), how the
intervals are computed (confidence, resamples, seed), which gates each evaluation must pass, and
where the page goes. Its `status` is what the operator computed from the stored results: the top
rows with their intervals and rank intervals, the counts by phase, what is not comparable and why,
each evaluation's gate verdict, the page's URI. The CRD is generated from these models (`crd`).

Like the evaluation spec, the models are camelCase on the wire, reject unknown fields, and carry
their CEL rules beside the fields (`cel_rules`), so a bad leaderboard fails at `kubectl apply`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from nejumi_eval.api.v1alpha1.cel import Rule
from nejumi_eval.api.v1alpha1.spec import (
    DNS_SUBDOMAIN,
    LABEL_VALUE,
    S3_URI,
    SecretKeyRef,
    Spec,
    _cel_string,
    label_key_cel,
)
from nejumi_eval.api.v1alpha1.status import Condition, _Status

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A namespace name: an RFC 1123 label, ≤63."""

PAGE_FILE = "index.html"
"""The page's object name under the publish URI."""
BOARD_FILE = "leaderboard.json"
"""The board's JSON (the CLI's `--json` document) under the publish URI."""

MAX_TOP = 50
MAX_LISTED = 100
"""Rows kept in each of the status's lists (not comparable, excluded, gates): a status stays small
(etcd's object limit is 1.5 MiB); the page and its JSON have every evaluation."""
MAX_MEMBERS = 1000
"""Matched evaluations with stored results remembered in the status (what keeps a deleted one on
the board: its labels are gone with it, so the leaderboard remembers that it matched)."""


# ---- spec --------------------------------------------------------------------------------------


class LabelSelectorRequirement(Spec):
    """One `matchExpressions` item (metav1.LabelSelectorRequirement)."""

    key: str = Field(min_length=1, max_length=317)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[Annotated[str, Field(max_length=63)]] = Field(default_factory=list, max_length=64)

    cel_rules = (
        Rule(rule=label_key_cel("self.key"), message="a label key: [prefix/]name", field_path=".key"),
        Rule(
            rule="(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
            message="values: required (non-empty) with In and NotIn, not allowed with Exists and "
            "DoesNotExist",
            field_path=".values",
        ),
        Rule(
            rule=f"!has(self.values) || self.values.all(v, v.matches({_cel_string(LABEL_VALUE)}))",
            message="values: each a label value (≤63 alphanumerics, '-', '_', '.')",
            field_path=".values",
        ),
    )


class LabelSelector(Spec):
    """Which evaluations: every label in `matchLabels` and every expression must hold (an empty
    selector matches every evaluation in the namespaces read)."""

    match_labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(default_factory=dict, max_length=32)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=16)

    cel_rules = (
        Rule(
            rule=f"!has(self.matchLabels) || self.matchLabels.all(k, {label_key_cel('k')})",
            message="matchLabels: each key a label key, [prefix/]name",
            field_path=".matchLabels",
        ),
        Rule(
            rule="!has(self.matchLabels) || "
            f"self.matchLabels.all(k, self.matchLabels[k].matches({_cel_string(LABEL_VALUE)}))",
            message="matchLabels: each value a label value (≤63 alphanumerics, '-', '_', '.')",
            field_path=".matchLabels",
        ),
    )

    def matches(self, labels: dict[str, str] | None) -> bool:
        """Whether an object with `labels` is selected (the API server's own semantics)."""
        labels = labels or {}
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for e in self.match_expressions:
            present = e.key in labels
            if e.operator == "Exists" and not present:
                return False
            if e.operator == "DoesNotExist" and present:
                return False
            if e.operator == "In" and labels.get(e.key) not in e.values:
                return False
            if e.operator == "NotIn" and present and labels[e.key] in e.values:
                return False
        return True


class Include(Spec):
    """Runs that are not leaderboard scores, ranked anyway (still marked) when set; by default they
    are listed as excluded, with the reason."""

    capped: bool = Field(False, description="Capped runs (smoke tests).")
    synthetic_judge: bool = Field(False, description="Runs scored by the synthetic judge.")
    degraded: bool = Field(False, description="Degraded runs (failed requests, invalid judgments).")


GATE_METRIC = r"^(Overall|[a-z0-9][a-z0-9_-]*(/[^/\s]+)?)$"


class Gate(Spec):
    """A release gate each matched evaluation is judged by. Either a threshold (`min`: the metric's
    score, or with `statistic: LowerBound` its interval's low end, must be at least `min`) or a
    non-inferiority check (`notWorseThan`: on no category of any benchmark, nor on Overall, may the
    evaluation be distinguishably worse than the named one: the paired bootstrap interval of the
    difference lies below 0)."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    metric: str = Field(
        "Overall",
        max_length=128,
        pattern=GATE_METRIC,
        description="With `min`: `Overall`, a benchmark (`jaster`, `mtbench`) or a category "
        "(`jaster/NLI`, `mtbench/coding`).",
    )
    min: float | None = Field(None, description="The threshold, on the metric's own scale.")
    statistic: Literal["Score", "LowerBound"] = Field(
        "Score", description="With `min`: what must reach it, the score or its interval's low end."
    )
    not_worse_than: str | None = Field(
        None,
        max_length=317,
        description="An evaluation (`name` in the leaderboard's namespace, or `namespace/name`) "
        "compared question by question on every category and on Overall.",
    )

    cel_rules = (
        Rule(
            rule="has(self.min) != has(self.notWorseThan)",
            message="a gate has either min or notWorseThan",
        ),
        Rule(
            rule="!has(self.notWorseThan) || (!has(self.metric) && !has(self.statistic))",
            message="metric and statistic go with min (notWorseThan checks every category and Overall)",
        ),
        Rule(
            rule="!has(self.notWorseThan) || self.notWorseThan.matches("
            f"{_cel_string(f'^({DNS_LABEL[1:-1]}/)?{DNS_SUBDOMAIN[1:-1]}$')})",
            message="notWorseThan: an evaluation name, or namespace/name",
            field_path=".notWorseThan",
        ),
    )


class WandbPublish(Spec):
    """A W&B report of the project's runs (`nejumi-eval leaderboard --wandb-report`), rebuilt when
    the board changes, by a Job given the key by reference."""

    project: str = Field(
        min_length=3, max_length=256, pattern=r"^[^/\s]+/[^/\s]+$", description="entity/project."
    )
    api_key_secret_ref: SecretKeyRef = Field(description="The W&B API key (a Secret key).")


class Publish(Spec):
    """Where the page and its JSON go."""

    uri: str | None = Field(
        None,
        max_length=1024,
        pattern=S3_URI,
        description=f"s3://bucket[/prefix]: the page as <uri>/{PAGE_FILE}, the board as "
        f"<uri>/{BOARD_FILE}, written with the operator's store credentials. Unset: the chart's "
        "`leaderboard.store.uri`/leaderboards/<namespace>/<name>, else none.",
    )
    wandb: WandbPublish | None = None


class LeaderboardSpec(Spec):
    """What one NejumiLeaderboard ranks and how."""

    title: str | None = Field(None, max_length=200, description="The page's title (default: the name).")
    selector: LabelSelector | None = Field(
        None, description="Which evaluations (unset or empty: every one in the namespaces read)."
    )
    namespaces: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Namespaces read besides the leaderboard's own (each must be allowed by the "
        "chart's policy.leaderboardNamespaces).",
    )
    protocol: str | None = Field(
        None,
        min_length=6,
        max_length=64,
        pattern=r"^[0-9a-f]+$",
        description="The protocol group ranked: a prefix of its key (status.protocol). Unset: the "
        "group most ranked evaluations belong to. Others are listed as not comparable.",
    )
    include: Include | None = None
    keep_deleted: bool = Field(
        True,
        description="A matched evaluation deleted since (a GitOps prune) stays on the board from "
        "its stored results.",
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Of every interval.")
    resamples: int = Field(1000, ge=0, le=10000, description="Bootstrap resamples (0: no intervals).")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    top: int = Field(10, ge=1, le=MAX_TOP, description="Rows in status.top.")
    gates: list[Gate] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    publish: Publish | None = None

    @model_validator(mode="after")
    def _unique(self) -> LeaderboardSpec:
        """What the CRD says with list types (`set`; `map` keyed by name), said here too: a CEL rule
        comparing every pair would cost the API server more than its budget allows."""
        if len(set(self.namespaces)) != len(self.namespaces):
            raise ValueError("namespaces: each at most once")
        names = [g.name for g in self.gates]
        if len(set(names)) != len(names):
            raise ValueError("gates: names must be unique")
        return self

    cel_rules = (
        Rule(
            rule=f"!has(self.namespaces) || self.namespaces.all(n, n.matches({_cel_string(DNS_LABEL)}))",
            message="namespaces: each a namespace name",
            field_path=".namespaces",
        ),
    )


# ---- status ------------------------------------------------------------------------------------


class Bounds(_Status):
    low: float
    high: float


class RankBounds(_Status):
    low: int = Field(ge=1, description="The best rank it takes in the central `confidence` of resamples.")
    high: int = Field(ge=1, description="The worst.")


class Row(_Status):
    """One ranked evaluation."""

    rank: int = Field(ge=1)
    model: str
    evaluation: str = Field(description="namespace/name (a deleted one's from its stored results).")
    overall: float | None = None
    interval: Bounds | None = Field(None, description="Overall's bootstrap interval.")
    rank_interval: RankBounds | None = Field(
        None, description="The range of ranks it takes across the bootstrap resamples."
    )
    tied_with_above: bool | None = Field(
        None, description="Not distinguishable from the row above (paired bootstrap): shown as ≈."
    )
    display: str = Field(description="One line: `0.6123 [0.5980, 0.6271] ≈ ranks 1–3`.")
    deleted: bool | None = Field(None, description="The resource is gone; ranked from its stored results.")


class Counts(_Status):
    """Matched evaluations by phase and by placement."""

    matched: int = 0
    queued: int = 0
    pending: int = Field(0, description="Queued + Pending + Running: not finished.")
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    deleted: int = Field(0, description="Gone from the cluster, on the board from the store.")
    ranked: int = 0
    excluded: int = Field(0, description="Finished but not ranked (capped, failed, degraded…).")
    superseded: int = Field(0, description="An earlier evaluation of a model ranked by a later one.")
    not_comparable: int = Field(0, description="Ranked in another protocol group.")


class NotComparable(_Status):
    evaluation: str
    model: str
    group: str
    differs: list[str] = Field(default_factory=list, description="Identity fields with other values.")
    missing: list[str] = Field(default_factory=list, description="Identity fields only one side records.")
    note: str = ""


class Excluded(_Status):
    evaluation: str
    model: str
    reasons: list[str]


class GateFailure(_Status):
    gate: str
    metric: str = Field(description="`Overall`, a benchmark, or benchmark/category.")
    value: float | None = Field(None, description="The evaluation's score (or the difference, a − b).")
    interval: Bounds | None = None
    threshold: float | None = None
    against: str | None = Field(None, description="notWorseThan: the evaluation compared with.")
    message: str


class GateVerdict(_Status):
    evaluation: str
    model: str
    verdict: Literal["Passed", "Failed", "Unknown"]
    failures: list[GateFailure] = Field(default_factory=list)
    message: str = ""


class PageStatus(_Status):
    uri: str = Field(description=f"The page: s3://…/{PAGE_FILE}.")
    json_uri: str = Field(description=f"The board: s3://…/{BOARD_FILE}.")
    bytes: int = Field(0, ge=0)
    published: bool = Field(description="Written on the last computation (false: see the message).")


class Member(_Status):
    """A matched evaluation whose results are stored: where they are, and whether the resource is
    gone (then, with `keepDeleted`, it stays on the board from the store)."""

    evaluation: str = Field(description="namespace/name.")
    model: str = ""
    uri: str
    manifest_sha256: str | None = None
    deleted: bool = False


class LeaderboardStatus(_Status):
    observed_generation: int | None = Field(None, ge=0)
    conditions: list[Condition] = Field(default_factory=list)
    updated_at: str | None = Field(
        None, json_schema_extra={"format": "date-time"}, description="When the board was last computed."
    )
    leader: str | None = Field(None, description="The model ranked first.")
    leader_overall: str | None = Field(None, description="Its Overall with the interval, one line.")
    protocol: str | None = Field(None, description="The ranked protocol group's key.")
    top: list[Row] = Field(default_factory=list, max_length=MAX_TOP)
    counts: Counts | None = None
    not_comparable: list[NotComparable] = Field(default_factory=list, max_length=MAX_LISTED)
    excluded: list[Excluded] = Field(default_factory=list, max_length=MAX_LISTED)
    gates: list[GateVerdict] = Field(default_factory=list, max_length=MAX_LISTED)
    page: PageStatus | None = None
    members: list[Member] = Field(
        default_factory=list,
        max_length=MAX_MEMBERS,
        description="Matched evaluations with stored results (deleted ones included while kept).",
    )
    computations: int = Field(0, ge=0, description="Times the board was computed.")
    compute_seconds: float | None = Field(None, ge=0, description="The last computation's duration.")
    compute_peak_mib: float | None = Field(
        None, ge=0, description="The last computation's peak memory (its child process's RSS)."
    )
    bytes_read: int | None = Field(None, ge=0, description="Bytes the last computation read from the store.")
    bytes_from_cache: int | None = Field(
        None, ge=0, description="Bytes it read from the operator's local copies instead (unchanged objects)."
    )
    digest: str | None = Field(
        None, description="sha256 of the board's content (the published page's metadata names it too)."
    )
    wandb_report: str | None = Field(
        None, description="spec.publish.wandb: the Job that builds the report of this board, or why none."
    )
    warnings: list[str] = Field(default_factory=list, max_length=MAX_LISTED)
    message: str | None = None


# ---- conditions ----------------------------------------------------------------------------------

GATES_PASSED = "GatesPassed"
"""True: every gated evaluation that finished passed; False: one failed (named); Unknown: none to
judge yet. Absent without gates."""

# reasons
COMPUTED = "Computed"
NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
COMPUTE_FAILED = "ComputeFailed"
NOT_PUBLISHED = "NotPublished"
ALL_PASSED = "AllPassed"
GATE_FAILED = "GateFailed"
NOTHING_TO_JUDGE = "NothingToJudge"

LEADERBOARD_CONDITION_TYPES = ("Ready", "Reconciling", "Stalled", GATES_PASSED)


# ---- the operator ↔ computation contract ---------------------------------------------------------
# The operator computes a board in a child process (`python -m nejumi_eval.leaderboard.compute`):
# its memory and CPU are the child's, bounded and returned when it ends, and the operator's event
# loop never waits on a bootstrap. The request goes in on stdin, the result comes out on stdout.


COMPUTE_MEMORY_ENV = "NEJUMI_LEADERBOARD_MEMORY_MIB"
"""Set by the operator on the child: the MiB it may allocate (it limits its own data segment)."""


COMPUTE_CACHE_DIR_ENV = "NEJUMI_LEADERBOARD_CACHE_DIR"
"""Set by the operator on the child: a folder of stored objects kept by sha256 between computations
(`nejumi_eval.storage.cache`); unset: every computation reads the store."""
COMPUTE_CACHE_MIB_ENV = "NEJUMI_LEADERBOARD_CACHE_MIB"
"""The most MiB that folder keeps (least recently used copies go first)."""
COMPUTE_ERROR_PREFIX = "error: "
"""The child's last word when it fails: one line on stderr, after its traceback (for the log)."""


class ComputeRequest(_Status):
    namespace: str
    name: str
    generation: int = Field(ge=1)
    spec: LeaderboardSpec
    namespaces: list[str] = Field(description="Every namespace read (own first), already allowed.")
    members: list[Member] = Field(default_factory=list, description="The last computation's.")
    publish_uri: str | None = Field(None, description="s3://… the page and JSON go under; null: none.")


class ComputeResult(_Status):
    status: LeaderboardStatus = Field(
        description="leader … warnings, members, page and digest; the operator adds conditions, times."
    )
    digest: str = Field(description="sha256 of what the board says (not when it was computed).")
    evaluations: int = Field(ge=0, description="Evaluations read (live and retained).")
    seconds: float = Field(ge=0)
    bytes_read: int = Field(ge=0)
    bytes_from_cache: int = Field(0, ge=0)
    peak_rss_mib: float = Field(ge=0)
    publish_error: str | None = None
