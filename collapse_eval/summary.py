"""summary.json as typed objects (written by ``compare``; read by ``gate``, ``report``,
``correlate``), and where the runs it names are.

``Summary`` and the types it is made of (``Side``, ``Comparison``, ``Retention``,
``DomainOverall``, ``DomainGain``, ``Unpaired``, ``Flips``) are what flows from
``compare_runs`` through ``verdict.apply_policy`` to every report. ``load_summary`` checks
the version (older ones are migrated, newer ones refused with what to do) and the keys
every reader relies on, so a reader never fails half-way on a file from another release or
a hand-edited one. ``side_run_dir`` is the one place that finds a run directory named in a
summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from collapse_eval.errors import InputError
from collapse_eval.records import is_run_dir, read_json
from collapse_eval.versioning import Migration, upgrade

SUMMARY_SCHEMA_VERSION = 1
SUMMARY_FILE = "summary.json"
# version v -> a function that lifts a summary of version v to v + 1. Version 1 is the
# first, so there is nothing to migrate yet; a change of the format adds an entry here.
SUMMARY_MIGRATIONS: dict[int, Migration] = {}

_REQUIRED = ("verdict", "reasons", "base", "tuned", "policy", "comparisons")
_COMPARISON_REQUIRED = (
    "suite",
    "task",
    "group_by",
    "group",
    "metric",
    "n",
    "base_mean",
    "tuned_mean",
    "delta",
    "ci_low",
    "ci_high",
    "test",
    "p_value",
    "p_adjusted",
    "status",
)
_NUMBERS = ("delta",)  # judged by gate: must be numbers
_NULLABLE_NUMBERS = ("ci_low", "ci_high", "p_value", "p_adjusted")


def _checked(obj: Any, path: str | Path, migrations: Mapping[int, Migration]) -> dict[str, Any]:
    """``obj`` migrated to the current version, with the keys and types readers rely on."""
    if not isinstance(obj, dict):
        raise InputError(path, "not a collapse-eval summary.json: expected a JSON object")
    summary = upgrade(
        obj,
        kind=SUMMARY_FILE,
        current=SUMMARY_SCHEMA_VERSION,
        migrations=migrations,
        path=path,
    )
    for key in _REQUIRED:
        if key not in summary:
            raise InputError(
                path, "missing required field (not a collapse-eval summary)", field=key
            )
    if not isinstance(summary["comparisons"], list):
        raise InputError(path, "must be a list", field="comparisons")
    if not isinstance(summary["reasons"], list):
        raise InputError(path, "must be a list", field="reasons")
    for side in ("base", "tuned"):
        if not isinstance(summary[side], dict):
            raise InputError(path, "must be an object with 'model' and 'run'", field=side)
    for index, row in enumerate(summary["comparisons"]):
        _check_comparison(row, path, f"comparisons[{index}]")
    return summary


def _check_comparison(row: Any, path: str | Path, where: str) -> None:
    if not isinstance(row, dict):
        raise InputError(path, "must be an object", field=where)
    for key in _COMPARISON_REQUIRED:
        if key not in row:
            raise InputError(path, "missing required field", field=f"{where}.{key}")
    for key in _NUMBERS + _NULLABLE_NUMBERS:
        value = row[key]
        if value is None and key in _NULLABLE_NUMBERS:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(path, f"must be a number, got {value!r}", field=f"{where}.{key}")


def load_summary(path: str | Path) -> Summary:
    """Read and check summary.json (InputError, exit 2, on any problem)."""
    return Summary.from_json(read_json(path), path)


def side_run_dir(summary: Summary, side: str, summary_path: str | Path) -> Path | None:
    """The run directory a summary names for ``side`` ("base" or "tuned"), or None.

    The path is taken as written when it is absolute; a relative one (older summaries
    stored the path as typed) or one whose tree was moved is looked up relative to the
    directories above summary.json, longest tail of the path first, so the result does
    not depend on the working directory.
    """
    stored = (summary.base if side == "base" else summary.tuned).run
    if not stored:
        return None
    home = Path(summary_path).resolve().parent
    for candidate in _run_candidates(Path(str(stored)), home):
        if is_run_dir(candidate):
            return candidate
    return None


def side_run_dirs(summary: Summary, summary_path: str | Path) -> tuple[Path | None, Path | None]:
    """The base and tuned run directories (``side_run_dir``), None for one not found."""
    return (
        side_run_dir(summary, "base", summary_path),
        side_run_dir(summary, "tuned", summary_path),
    )


def _run_candidates(stored: Path, home: Path) -> Iterator[Path]:
    if stored.is_absolute():
        yield stored
    parts = [p for p in stored.parts if p != stored.anchor]
    for start in range(len(parts)):
        tail = Path(*parts[start:])
        for anchor in (home, *home.parents):
            yield anchor / tail


# ---------------------------------------------------------------- the typed summary
#
# summary.json in memory: ``compare_runs`` builds a ``Summary``, ``verdict.apply_policy``
# judges it, ``load_summary`` reads one back, and every reader (gate, report, correlate,
# the demo) uses its attributes. ``to_json`` gives the JSON object written to disk, keys in
# the order below; ``from_json`` is its inverse. Reading is as lenient as the readers always
# were: only what ``gate`` judges is checked (InputError, exit 2). A key this release does
# not know (a newer minor writer's) is kept in ``extra``, and so is a known optional key
# whose value has the wrong type (readers then see the field's default); both are written
# back as read, after the known keys. A known optional key the file lacks is not written
# back unless something (re-judging) gave it a value.

_Check = Callable[[Any], bool]


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num_or_none(value: Any) -> bool:
    return value is None or _is_num(value)


def _int_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _bool_or_none(value: Any) -> bool:
    return value is None or isinstance(value, bool)


def _dict_or_none(value: Any) -> bool:
    return value is None or isinstance(value, dict)


def _anything(value: Any) -> bool:
    return True


class _Fields:
    """Reads the known keys of one JSON object; remembers what was absent and what else
    the object holds (``extra``)."""

    def __init__(self, obj: Mapping[str, Any], known: Iterable[str]) -> None:
        self.obj = obj
        known = set(known)
        self.extra: dict[str, Any] = {k: v for k, v in obj.items() if k not in known}
        self.absent: set[str] = set()

    def get(self, key: str, default: Any = None, check: _Check = _anything) -> Any:
        """The value of ``key``; ``default`` when absent or (kept in extra) of another type."""
        if key not in self.obj:
            self.absent.add(key)
            return default
        value = self.obj[key]
        if check(value):
            return value
        self.extra[key] = value
        self.absent.add(key)
        return default


# Fields of every summary dataclass that are not JSON keys: what the read file lacked, and
# the keys this release does not know.
_NOT_JSON = ("absent", "extra")


def _json_keys(cls: type) -> tuple[str, ...]:
    """The JSON keys of a summary dataclass: its fields in declaration order, less _NOT_JSON."""
    return tuple(f.name for f in fields(cls) if f.name not in _NOT_JSON)


def _emit(
    obj: Any, absent: frozenset[str], extra: Mapping[str, Any], omit: Iterable[str] = ()
) -> dict[str, Any]:
    """The JSON object of a summary dataclass: its fields in declaration order (a field the
    read file lacked is left out while it still has its default; ``None`` values of
    ``_OMIT_NONE`` fields are left out), then ``extra``."""
    out: dict[str, Any] = {}
    skip = set(omit)
    for f in fields(obj):
        if f.name in _NOT_JSON or f.name in skip:
            continue
        value = getattr(obj, f.name)
        if value is None and f.name in _OMIT_NONE:
            continue
        if f.name in absent and value == _default_of(f):
            continue
        out[f.name] = value.to_json() if hasattr(value, "to_json") else _plain(value)
    for key, value in extra.items():
        out.setdefault(key, value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [v.to_json() if hasattr(v, "to_json") else v for v in value]
    return value


def _default_of(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None  # a required field: absent only from the pooled domain row


# Set only by re-judging (or only with `compare --sequential` / `--train`): never written as null.
_OMIT_NONE = frozenset(
    ("critical", "margin_source", "required", "references", "sequential", "training")
)
# What a pooled domain row lacks (it is not judged on its own); filled in when read.
POOLED_LACKS = (
    "group_by",
    "group",
    "p_adjusted",
    "status",
    "q_value",
    "margin",
    "benchmark_margin",
)


@dataclass(frozen=True, slots=True)
class Flips:
    """Items that got worse (lost), better (gained) or neither, in the metric's direction."""

    lost: int
    gained: int
    same: int

    @classmethod
    def from_json(cls, obj: Any) -> Flips | None:
        if not isinstance(obj, dict) or not all(
            isinstance(obj.get(k), int) for k in ("lost", "gained", "same")
        ):
            return None
        return cls(obj["lost"], obj["gained"], obj["same"])

    def to_json(self) -> dict[str, int]:
        return {"lost": self.lost, "gained": self.gained, "same": self.same}


def _flips_or_none(value: Any) -> bool:
    return value is None or Flips.from_json(value) is not None


@dataclass(slots=True)
class Comparison:
    """One row of ``comparisons`` (and the pooled domain row): a paired comparison.

    The first fields are the required ones; the others are the extensions compare writes
    (docs/formats.md#summaryjson). ``status``, ``p_adjusted``, ``q_value``, ``margin``,
    ``margin_source``, ``critical`` and ``required`` are filled in by compare's family
    adjustment and by ``verdict.apply_policy``.
    """

    suite: str
    task: str
    group_by: str | None
    group: str | None
    metric: str
    n: int
    base_mean: float | None
    tuned_mean: float | None
    delta: float
    ci_low: float | None
    ci_high: float | None
    test: str
    p_value: float | None
    p_adjusted: float | None = None
    status: str | None = None
    family: str | None = None
    q_value: float | None = None
    margin: float | None = None
    benchmark_margin: float | None = None
    mde: float | None = None
    se: float | None = None
    se_clustered: float | None = None
    n_clusters: int | None = None
    ci_method: str | None = None
    higher_is_better: bool = True
    tuned_only: int | None = None
    base_only: int | None = None
    note: str | None = None
    equivalence_ci_low: float | None = None
    equivalence_ci_high: float | None = None
    flips: Flips | None = None
    delta_quantiles: dict[str, float] | None = None
    critical: bool | None = None
    margin_source: str | None = None
    required: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()

    @classmethod
    def from_json(
        cls, obj: Any, path: str | Path, where: str, *, pooled: bool = False
    ) -> Comparison:
        """A checked row (``_check_comparison``); ``pooled``: the pooled domain row, which
        lacks POOLED_LACKS and is not checked (it is never judged on its own)."""
        if not pooled:
            _check_comparison(obj, path, where)
        f = _Fields(obj, _COMPARISON_KEYS)
        return cls(
            **{name: f.get(name) for name in _COMPARISON_REQUIRED},
            **{name: f.get(name, default, check) for name, default, check in _EXTENSIONS},
            flips=Flips.from_json(f.get("flips", None, _flips_or_none)),
            extra=f.extra,
            absent=frozenset(f.absent),
        )

    def to_json(self, *, omit: Iterable[str] = ()) -> dict[str, Any]:
        return _emit(self, self.absent, self.extra, omit)


# (name, default, check) of each optional field of a comparison row, flips aside.
_EXTENSIONS: tuple[tuple[str, Any, _Check], ...] = (
    ("family", None, _str_or_none),
    ("q_value", None, _num_or_none),
    ("margin", None, _num_or_none),
    ("benchmark_margin", None, _num_or_none),
    ("mde", None, _num_or_none),
    ("se", None, _num_or_none),
    ("se_clustered", None, _num_or_none),
    ("n_clusters", None, _int_or_none),
    ("ci_method", None, _str_or_none),
    ("higher_is_better", True, _is_bool),
    ("tuned_only", None, _int_or_none),
    ("base_only", None, _int_or_none),
    ("note", None, _str_or_none),
    ("equivalence_ci_low", None, _num_or_none),
    ("equivalence_ci_high", None, _num_or_none),
    ("delta_quantiles", None, _dict_or_none),
    ("critical", None, _bool_or_none),
    ("margin_source", None, _str_or_none),
    ("required", None, _str_or_none),
)
_COMPARISON_KEYS = (*_COMPARISON_REQUIRED, *(e[0] for e in _EXTENSIONS), "flips")


@dataclass(frozen=True, slots=True)
class Side:
    """``base`` or ``tuned``: the model and its run directory (absolute when compare wrote
    it; see ``side_run_dir``)."""

    model: str | None
    run: str | None
    model_fingerprint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()

    @classmethod
    def from_json(cls, obj: Any, path: str | Path, side: str) -> Side:
        if not isinstance(obj, dict):
            raise InputError(path, "must be an object with 'model' and 'run'", field=side)
        f = _Fields(obj, _json_keys(cls))
        return cls(
            f.get("model", None, _str_or_none),
            f.get("run", None, _str_or_none),
            f.get("model_fingerprint", None, _str_or_none),
            f.extra,
            frozenset(f.absent),
        )

    def to_json(self) -> dict[str, Any]:
        return _emit(self, self.absent, self.extra)


@dataclass(frozen=True, slots=True)
class Retention:
    """The general retention index (tuned over base macro means) and its CI."""

    index: float | None
    ci_low: float | None
    ci_high: float | None
    base_macro: float | None = None
    tuned_macro: float | None = None
    n_tasks: int | None = None
    ci_method: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Retention:
        f = _Fields(obj, _RETENTION_KEYS)
        values = {k: f.get(k, None, _num_or_none) for k in _RETENTION_KEYS[:5]}
        return cls(
            **values,
            n_tasks=f.get("n_tasks", None, _int_or_none),
            ci_method=f.get("ci_method", None, _str_or_none),
            extra=f.extra,
            absent=frozenset(f.absent),
        )

    def to_json(self) -> dict[str, Any]:
        return _emit(self, self.absent, self.extra)


_RETENTION_KEYS = _json_keys(Retention)


@dataclass(frozen=True, slots=True)
class MacroComparison:
    """The unweighted mean over task types of the per-type deltas (stratified CI)."""

    n_groups: int | None
    base_mean: float | None
    tuned_mean: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    se: float | None
    test: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> MacroComparison:
        f = _Fields(obj, _MACRO_KEYS)
        numbers = {k: f.get(k, None, _num_or_none) for k in _MACRO_KEYS[1:8]}
        return cls(
            n_groups=f.get("n_groups", None, _int_or_none),
            **numbers,
            test=f.get("test", None, _str_or_none),
            extra=f.extra,
            absent=frozenset(f.absent),
        )

    def to_json(self) -> dict[str, Any]:
        return _emit(self, self.absent, self.extra)


_MACRO_KEYS = _json_keys(MacroComparison)


@dataclass(frozen=True, slots=True)
class DomainOverall:
    """All domain items pooled (a comparison without the judged fields), and the macro
    average over task types."""

    pooled: Comparison | None
    macro_by_task_type: MacroComparison | None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], path: str | Path) -> DomainOverall:
        f = _Fields(obj, _json_keys(cls))
        pooled = f.get("pooled", None, _dict_or_none)
        macro = f.get("macro_by_task_type", None, _dict_or_none)
        return cls(
            Comparison.from_json(pooled, path, "domain_overall.pooled", pooled=True)
            if pooled
            else None,
            MacroComparison.from_json(macro) if macro is not None else None,
            f.extra,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pooled": self.pooled.to_json(omit=POOLED_LACKS) if self.pooled else None,
            "macro_by_task_type": self.macro_by_task_type.to_json()
            if self.macro_by_task_type
            else None,
        }
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


@dataclass(frozen=True, slots=True)
class DomainGain:
    """Whether the pooled domain comparison shows the gain the policy requires."""

    required: bool
    min_gain: float
    delta: float | None
    p_value: float | None
    met: bool
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DomainGain:
        f = _Fields(obj, _json_keys(cls))
        return cls(
            f.get("required", False, _is_bool),
            f.get("min_gain", 0.0, _is_num),
            f.get("delta", None, _num_or_none),
            f.get("p_value", None, _num_or_none),
            f.get("met", False, _is_bool),
            f.extra,
            frozenset(f.absent),
        )

    def to_json(self) -> dict[str, Any]:
        return _emit(self, self.absent, self.extra)


@dataclass(frozen=True, slots=True)
class Unpaired:
    """A task present in only one of the runs (not compared)."""

    suite: str
    task: str
    only_in: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Unpaired:
        f = _Fields(obj, _json_keys(cls))
        return cls(
            str(f.get("suite", "")), str(f.get("task", "")), str(f.get("only_in", "")), f.extra
        )

    def to_json(self) -> dict[str, Any]:
        return _emit(self, frozenset(), self.extra)


@dataclass(slots=True)
class Summary:
    """summary.json. ``compare_runs`` builds it; ``verdict.apply_policy`` returns a judged
    copy (verdict, reasons, statuses, domain_gain)."""

    schema_version: int
    verdict: str | None
    reasons: list[str]
    base: Side
    tuned: Side
    policy: dict[str, Any]  # the policy's own JSON form (Policy.to_json)
    comparisons: list[Comparison]
    alpha: float | None = None
    retention: Retention | None = None
    domain_overall: DomainOverall | None = None
    unpaired: list[Unpaired] = field(default_factory=list)
    seed: int | None = None
    n_boot: int | None = None
    created_at: str | None = None
    collapse_eval_version: str | None = None
    domain_gain: DomainGain | None = None
    # Gating domain items by where their reference came from: {"silver": n (a labeler
    # model's answer), "gold": n (human-corrected), "unknown": n}; None (left out) when
    # no item says, as for a test set not made by `data build`.
    references: dict[str, int] | None = None
    # compare --sequential: the design, the looks of each gating comparison and the verdict
    # they gave (docs/formats.md#sequential); None (left out) for a fixed-n comparison.
    sequential: dict[str, Any] | None = None
    # The training set attached with `compare --train` (collapse_eval/training.py): per
    # domain slice its samples, quality and the slice's delta, the correlations across
    # slices, and the nearest training samples of every lost domain item; None without.
    training: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()

    @classmethod
    def from_json(
        cls,
        obj: Any,
        path: str | Path = SUMMARY_FILE,
        *,
        migrations: Mapping[int, Migration] = SUMMARY_MIGRATIONS,
    ) -> Summary:
        """A decoded summary.json, migrated to the current version and checked (InputError,
        exit 2: what is missing or of the wrong type, by field)."""
        obj = _checked(obj, path, migrations)
        f = _Fields(obj, _SUMMARY_KEYS)
        overall = f.get("domain_overall", None, _dict_or_none)
        retention = f.get("retention", None, _dict_or_none)
        gain = f.get("domain_gain", None, _dict_or_none)
        unpaired = f.get("unpaired", [], _list_of_dicts)
        return cls(
            schema_version=f.get("schema_version"),
            verdict=f.get("verdict"),
            reasons=f.get("reasons"),
            base=Side.from_json(f.get("base"), path, "base"),
            tuned=Side.from_json(f.get("tuned"), path, "tuned"),
            policy=f.get("policy"),
            comparisons=[
                Comparison.from_json(row, path, f"comparisons[{i}]")
                for i, row in enumerate(f.get("comparisons"))
            ],
            alpha=f.get("alpha", None, _num_or_none),
            retention=Retention.from_json(retention) if retention is not None else None,
            domain_overall=DomainOverall.from_json(overall, path) if overall is not None else None,
            unpaired=[Unpaired.from_json(u) for u in unpaired],
            seed=f.get("seed", None, _int_or_none),
            n_boot=f.get("n_boot", None, _int_or_none),
            created_at=f.get("created_at", None, _str_or_none),
            collapse_eval_version=f.get("collapse_eval_version", None, _str_or_none),
            domain_gain=DomainGain.from_json(gain) if gain is not None else None,
            references=f.get("references", None, _dict_or_none),
            sequential=f.get("sequential", None, _sequential_or_none),
            training=f.get("training", None, _dict_or_none),
            extra=f.extra,
            absent=frozenset(f.absent),
        )

    def to_json(self) -> dict[str, Any]:
        """The summary.json object: the same keys, in the same order, as compare writes."""
        return _emit(self, self.absent, self.extra)


def _sequential_or_none(value: Any) -> bool:
    """A sequential block with the keys ``gate`` re-judges it from (else kept in extra)."""
    if value is None:
        return True
    if not isinstance(value, dict) or not isinstance(value.get("comparisons"), list):
        return False
    return isinstance(value.get("design"), dict) and all(
        isinstance(c, dict) and isinstance(c.get("looks"), list) for c in value["comparisons"]
    )


def _list_of_dicts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


_SUMMARY_KEYS = _json_keys(Summary)
