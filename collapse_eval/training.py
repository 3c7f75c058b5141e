"""The training set attached to a comparison (``compare ... --train TRAIN.jsonl``).

A team with one fine-tune and one training set asks which parts of the data helped and
which hurt, and which training samples a lost test item resembles. Per domain slice (task
type, output format, and their cells) this gives the training samples, their quality (the
quality cascade's rule and dataset stages, or a given quality.json) and the slice's domain
delta with its CI; across slices, the Spearman correlation of training quality and of
training share with the delta (correlate.py's bootstrap CI and permutation p). Every lost
domain item is traced to its nearest training samples by BM25 (the ``bm25s`` library) on
what each shows the model, and test items that near-duplicate a training sample are marked
contaminated with ``quality --against``'s check (``find_contamination``).

The result is summary.json's additive ``training`` block (docs/formats.md#summaryjson).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from collapse_eval.columns import RunColumns
from collapse_eval.domain.dataset import DomainItem, TrainingItem
from collapse_eval.errors import InputError, UsageError, did_you_mean
from collapse_eval.summary import Comparison, Summary

if TYPE_CHECKING:  # compare.py imports pandas: only when a block is computed
    from collapse_eval.compare import DomainItems

NEAREST_K = 3  # training samples listed per lost item
EXCERPT_CHARS = 300  # of a training sample's input or response kept in summary.json
# Slices are correlated exactly (all n! orderings) up to 9 of them: the demo's task types.
EXACT_MAX_N = 9
SLICE_KINDS = ("task_type", "output_format", "cell")
SCORED_BY_RULES = "rules+dataset"  # the cascade stages run when a JSONL is given


@dataclass(frozen=True, slots=True)
class TrainingSample:
    """One training sample as the comparison uses it: its slice, text and quality."""

    id: str
    task_type: str | None
    output_format: str | None
    text: str  # what it shows the model: the prompt, or the non-system messages
    response: str
    score: float
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TrainingSet:
    """A training set with a quality score and flags per sample."""

    source: str  # the training JSONL
    quality_source: str | None  # the quality.json read, None when scored here
    overall: float
    items: tuple[TrainingItem, ...]
    samples: tuple[TrainingSample, ...]


# ---------------------------------------------------------------- --train options


def parse_train_options(values: Sequence[str], names: Sequence[str]) -> dict[str, Path]:
    """Candidate name -> training path from ``--train`` values: one PATH for every
    candidate, or NAME=PATH per candidate (NAME: its folder name under --out). Mixing the
    two, two PATHs, one NAME twice or an unknown NAME is a UsageError (exit 2)."""
    named: dict[str, Path] = {}
    shared: list[Path] = []
    for value in values:
        name, sep, rest = value.partition("=")
        if sep and name in names:
            if name in named:
                raise UsageError(
                    f"--train {name}=...: given twice ({named[name]} and {rest}); give one "
                    "training set per candidate"
                )
            named[name] = Path(rest)
        elif sep and not Path(value).exists():
            raise UsageError(
                f"--train {value}: no candidate is named '{name}'.{did_you_mean(name, names)}"
                f" Candidates: {', '.join(names)} (NAME=PATH names a candidate by its "
                "folder name under --out)"
            )
        else:
            shared.append(Path(value))
    if shared and named:
        raise UsageError(
            f"--train {shared[0]} (for every candidate) and --train NAME=PATH (for one) "
            "cannot be mixed: give one PATH for all, or NAME=PATH for each candidate"
        )
    if len(shared) > 1:
        raise UsageError(
            f"--train given {len(shared)} times without a candidate name ({shared[0]}, "
            f"{shared[1]}): which set belongs to which candidate? Give each as NAME=PATH "
            f"(candidates: {', '.join(names)})"
        )
    return {name: shared[0] for name in names} if shared else named


def load_trainings(paths: Mapping[str, Path]) -> dict[str, TrainingSet]:
    """Each candidate's training set, loading and scoring each distinct file once."""
    loaded: dict[Path, TrainingSet] = {}
    out = {}
    for name, path in paths.items():
        if path not in loaded:
            loaded[path] = load_training(path)
        out[name] = loaded[path]
    return out


def load_training(path: str | Path) -> TrainingSet:
    """A training JSONL scored by the cascade's rule and dataset stages (no model), or a
    quality.json (or its directory) with its samples.jsonl and the training set it names."""
    from collapse_eval.extras import require_module

    require_module("bm25s", "compare --train")
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found (--train)")
    if path.is_dir() or path.suffix == ".json":
        return _from_quality(path)
    from collapse_eval.domain.dataset import _detect_kind
    from collapse_eval.quality import assess_file

    if _detect_kind(path) == "domain":  # the commonest mix-up: the test set given twice
        raise InputError(
            path,
            "is not a training set: no line has a 'response', or some have a 'reference' "
            "(a domain test set's items)",
            hint="--train takes the set the candidate was fine-tuned on",
        )
    result = assess_file(path)
    scores = {s.item.id: (s.score, tuple(s.flags)) for s in result.samples}
    items = [s.item for s in result.samples]
    return _training_set(str(path), None, float(result.quality["overall"]), items, scores)


def _training_set(
    source: str,
    quality_source: str | None,
    overall: float,
    items: Sequence[TrainingItem],
    scores: Mapping[str, tuple[float, tuple[str, ...]]],
) -> TrainingSet:
    from collapse_eval.quality.contamination import input_text
    from collapse_eval.quality.rules import response_text

    samples = tuple(
        TrainingSample(
            id=item.id,
            task_type=item.task_type,
            output_format=item.output_format,
            text=input_text(item.prompt, item.messages),
            response=response_text(item),
            score=round(float(scores[item.id][0]), 6),  # as samples.jsonl has it
            flags=scores[item.id][1],
        )
        for item in items
    )
    return TrainingSet(source, quality_source, overall, tuple(items), samples)


def _from_quality(path: Path) -> TrainingSet:
    from collapse_eval.domain.dataset import load_training_set
    from collapse_eval.quality.report import QUALITY_FILE, SAMPLES_FILE, load_quality

    quality = load_quality(path)
    file = path / QUALITY_FILE if path.is_dir() else path
    scores = _sample_scores(file.parent / SAMPLES_FILE, file)
    source = _quality_source(quality, file)
    items = load_training_set(source, allow_empty_response=True)
    missing = [item.id for item in items if item.id not in scores]
    if missing:
        raise InputError(
            file,
            f"{len(missing)} sample(s) of {source} are not in its {SAMPLES_FILE} (first: "
            f"{missing[0]}): the training set changed since it was scored",
            hint="run `collapse-eval quality` on it again, or pass the JSONL as --train",
        )
    overall = quality["overall"]
    if isinstance(overall, bool) or not isinstance(overall, (int, float)):
        raise InputError(file, f"must be a number, got {overall!r}", field="overall")
    return _training_set(str(source), str(file), float(overall), items, scores)


def _sample_scores(path: Path, quality: Path) -> dict[str, tuple[float, tuple[str, ...]]]:
    """id -> (score, flags) from a quality run's samples.jsonl."""
    if not path.is_file():
        raise InputError(
            quality,
            f"has no {path.name} next to it (collapse-eval quality writes both); the "
            "per-slice quality needs every sample's score",
            hint="pass the training JSONL itself as --train",
        )
    out = {}
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
            score, flags = row["score"], row["flags"]
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise TypeError("score")
            out[str(row["id"])] = (float(score), tuple(str(f) for f in flags))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                path, "not a samples.jsonl line (id, score, flags)", line=line, field=str(exc)
            ) from None
    return out


def _quality_source(quality: Mapping[str, Any], file: Path) -> Path:
    """The training set a quality.json was computed from: its ``source`` as written (when
    absolute), else relative to the quality.json's directory, else its file name there."""
    source = quality.get("source")
    if not isinstance(source, str) or not source:
        raise InputError(
            file, "names no training set", field="source", hint="pass the training JSONL"
        )
    written = Path(source)
    tries = [written] if written.is_absolute() else []
    tries += [file.parent / written, file.parent / written.name]
    for candidate in tries:
        if candidate.is_file():
            return candidate
    raise InputError(
        file,
        f"the training set it was computed from ({source}) was not found, neither as "
        f"written nor in {file.parent}",
        field="source",
        hint="pass the training JSONL itself as --train",
    )


# ---------------------------------------------------------------- the training block


def attach_training(
    summary: Summary,
    runs: tuple[RunColumns, RunColumns],
    training: TrainingSet,
    test_sets: Mapping[str, Sequence[DomainItem]] | None,
) -> Summary:
    """``summary`` with its ``training`` block; ``test_sets`` (task -> the domain items
    evaluated) give the texts lost items are traced by (None: not traced, said why)."""
    from collapse_eval.compare import paired_domain_items

    items = paired_domain_items(*runs)
    lost = np.flatnonzero(items.tuned < items.base)  # domain scores: higher is better
    slices = _slices(summary, items, training)
    leaks = _contamination(training, items, test_sets)
    traced, why = _trace_lost(items, lost, training, test_sets, leaks)
    block: dict[str, Any] = {
        "source": training.source,
        "quality_source": training.quality_source,
        "scored_by": "quality.json" if training.quality_source else SCORED_BY_RULES,
        "n_samples": len(training.samples),
        "overall": round(training.overall, 6),
        "slices": slices,
        "correlations": _correlations(slices, summary),
        "contamination": _contamination_json(leaks, items, test_sets),
        "nearest": _nearest_method(),
        "n_lost": int(lost.size),
        "lost": traced,
    }
    if why is not None:
        block["lost_not_traced"] = why
    return dataclasses.replace(summary, training=block)


def _nearest_method() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "method": "bm25",
        "library": f"bm25s {version('bm25s')}",
        "k": NEAREST_K,
        "k1": 1.5,
        "b": 0.75,
        "text": "input: the prompt, or the non-system messages",
        "tokens": "words and CJK characters, casefolded (scorers.mixed_tokens)",
    }


# ---------------------------------------------------------------- slices


def _slice_keys(kind: str, task_type: Any, output_format: Any) -> tuple[str | None, str | None]:
    """(task type, output format) a slice of ``kind`` is keyed by (None: not part of it)."""
    tt = None if task_type is None else str(task_type)
    of = None if output_format is None else str(output_format)
    return (
        (tt, None) if kind == "task_type" else (None, of) if kind == "output_format" else (tt, of)
    )


def _slices(summary: Summary, items: DomainItems, training: TrainingSet) -> list[dict[str, Any]]:
    """One row per slice of each kind: test items, lost and gained, the delta and CI, and
    the slice's training samples; task-type and output-format deltas are the summary's own
    rows, cells are computed here with the same tests."""
    rows: list[dict[str, Any]] = []
    for kind in SLICE_KINDS:
        pairs = zip(items.task_types, items.output_formats, strict=True)
        test_keys = [_slice_keys(kind, t, f) for t, f in pairs]
        train_keys = [_slice_keys(kind, s.task_type, s.output_format) for s in training.samples]
        keys = sorted({k for k in test_keys + train_keys if None not in _named(kind, k)}, key=str)
        deltas = _deltas(summary, kind, items, test_keys, keys)
        for key in keys:
            members = [s for s, k in zip(training.samples, train_keys, strict=True) if k == key]
            in_test = np.array([k == key for k in test_keys], dtype=bool)
            rows.append(
                {
                    "group_by": kind,
                    "task_type": key[0],
                    "output_format": key[1],
                    **_test_side(items, in_test, deltas.get(key)),
                    **_train_side(members, len(training.samples)),
                }
            )
    return rows


def _named(kind: str, key: tuple[str | None, str | None]) -> tuple[str | None, ...]:
    """The parts of ``key`` that ``kind`` uses (a slice needs each of them)."""
    return key[:1] if kind == "task_type" else key[1:] if kind == "output_format" else key


def _deltas(
    summary: Summary, kind: str, items: DomainItems, test_keys: list[Any], keys: list[Any]
) -> dict[Any, dict[str, Any]]:
    """Slice key -> its delta and CI: the summary's comparison row for task types and
    output formats, a comparison computed here (compare_many) for cells."""
    if kind != "cell":
        found = {}
        for row in summary.comparisons:
            if row.family == f"domain/{kind}" and row.group is not None:
                found[_slice_keys(kind, row.group, row.group)] = _delta_of(row)
        return found
    from collapse_eval.stats import DEFAULT_N_BOOT, compare_many

    tested = [k for k in keys if k in set(test_keys)]
    samples = [items.sample(np.flatnonzero([t == k for t in test_keys])) for k in tested]
    results = compare_many(
        samples,
        alpha=summary.alpha or 0.05,
        n_boot=summary.n_boot or DEFAULT_N_BOOT,
        seed=summary.seed or 0,
    )
    return {
        k: {
            "delta": float(r.delta),
            "ci_low": _finite(r.ci_low),
            "ci_high": _finite(r.ci_high),
            "ci_method": r.ci_method,
        }
        for k, r in zip(tested, results, strict=True)
    }


def _delta_of(row: Comparison) -> dict[str, Any]:
    return {
        "delta": row.delta,
        "ci_low": row.ci_low,
        "ci_high": row.ci_high,
        "ci_method": row.ci_method,
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _test_side(
    items: DomainItems, rows: NDArray[np.bool_], delta: Mapping[str, Any] | None
) -> dict[str, Any]:
    empty = {"delta": None, "ci_low": None, "ci_high": None, "ci_method": None}
    return {
        "n_test": int(rows.sum()),
        "lost": int((items.tuned[rows] < items.base[rows]).sum()),
        "gained": int((items.tuned[rows] > items.base[rows]).sum()),
        **(delta or empty),
    }


def _train_side(members: Sequence[TrainingSample], total: int) -> dict[str, Any]:
    flags = Counter(f for s in members for f in s.flags)
    n = len(members)
    return {
        "n_train": n,
        "share": round(n / total, 6) if total else 0.0,
        "quality": round(sum(s.score for s in members) / n, 6) if n else None,
        "n_flagged": sum(bool(s.flags) for s in members),
        "flags": dict(sorted(flags.items())),
    }


# ---------------------------------------------------------------- correlations


def _correlations(slices: Sequence[Mapping[str, Any]], summary: Summary) -> list[dict[str, Any]]:
    """Spearman of the slices' training quality and training share with their delta, per
    slice kind (cells only when they split some task type; otherwise they are the task
    types again), over the slices with a delta (and, for quality, training samples)."""
    from collapse_eval.correlate import correlation_row

    out = []
    n_types = sum(s["group_by"] == "task_type" and s["n_test"] > 0 for s in slices)
    for kind in SLICE_KINDS:
        rows = [s for s in slices if s["group_by"] == kind and s["delta"] is not None]
        if kind == "cell" and len(rows) == n_types:
            continue
        for x_name in ("quality", "share"):
            pairs = [(s[x_name], s["delta"]) for s in rows if s[x_name] is not None]
            if len(pairs) < 3:
                continue
            row = correlation_row(
                [p[0] for p in pairs],
                [p[1] for p in pairs],
                "spearman",
                summary.n_boot or 10_000,
                summary.seed or 0,
                exact_max_n=EXACT_MAX_N,
            )
            out.append({"group_by": kind, "x": x_name, "y": "delta", **row})
    return out


# ---------------------------------------------------------------- contamination


Leaks = dict[tuple[str, str], dict[str, Any]]  # (task, test id) -> the leak


def _contamination(
    training: TrainingSet, items: DomainItems, test_sets: Mapping[str, Sequence[DomainItem]] | None
) -> Leaks:
    """The compared test items that near-duplicate a training sample (``quality
    --against``'s check), per domain task."""
    from collapse_eval.quality.contamination import find_contamination

    leaks: Leaks = {}
    for task in sorted({str(t) for t in items.tasks}):
        if test_sets is None or task not in test_sets:
            continue
        found = find_contamination(training.items, test_sets[task])
        for leak in found.leaks:
            leaks[task, leak.test_id] = {
                "task": task,
                "test_id": leak.test_id,
                "train_id": leak.train_id,
                "matched": leak.matched,
                "similarity": leak.similarity,
                "train_matches": leak.train_matches,
            }
    return leaks


def _contamination_json(
    leaks: Leaks, items: DomainItems, test_sets: Mapping[str, Sequence[DomainItem]] | None
) -> dict[str, Any]:
    from collapse_eval.quality.contamination import CONTEXT_THRESHOLD, PROMPT_THRESHOLD

    checked = [t for t in sorted({str(t) for t in items.tasks}) if test_sets and t in test_sets]
    return {
        "checked_tasks": checked,
        "n_contaminated": len(leaks),
        "context_jaccard": CONTEXT_THRESHOLD,
        "prompt_jaccard": PROMPT_THRESHOLD,
        "items": list(leaks.values()),
    }


# ---------------------------------------------------------------- lost items traced


def _trace_lost(
    items: DomainItems,
    lost: NDArray[np.intp],
    training: TrainingSet,
    test_sets: Mapping[str, Sequence[DomainItem]] | None,
    leaks: Leaks,
) -> tuple[list[dict[str, Any]], str | None]:
    """Each lost item with its nearest training samples; why some were not traced."""
    from collapse_eval.quality.contamination import input_text

    by_id = {
        (task, item.id): item for task, members in (test_sets or {}).items() for item in members
    }
    queries: list[str] = []
    rows: list[dict[str, Any]] = []
    untraced = 0
    for i in lost.tolist():
        key = (str(items.tasks[i]), str(items.item_ids[i]))
        item = by_id.get(key)
        if item is None and test_sets is not None and key[0] in test_sets:
            raise UsageError(
                f"--domain {key[0]}: the runs' item {key[1]} is not in it, so the runs were "
                "evaluated on another version of this test set; give the file they were "
                "evaluated on"
            )
        text = None if item is None else input_text(item.prompt, item.messages)
        if text is None:
            untraced += 1
        else:
            queries.append(text)
        rows.append(_lost_row(items, i, text, leaks.get(key)))
    neighbours = iter(nearest_samples(training.samples, queries))
    for row in rows:
        if row["nearest"] is None:
            row["nearest"] = next(neighbours)
    return rows, _untraced_note(untraced, test_sets)


def _lost_row(
    items: DomainItems, i: int, text: str | None, leak: dict[str, Any] | None
) -> dict[str, Any]:
    """A lost item's row; ``nearest`` is None (to fill in) when it has a text to trace."""
    return {
        "task": str(items.tasks[i]),
        "item_id": str(items.item_ids[i]),
        "input": None if text is None else _excerpt(text),
        "task_type": _text_or_none(items.task_types[i]),
        "output_format": _text_or_none(items.output_formats[i]),
        "base_score": float(items.base[i]),
        "tuned_score": float(items.tuned[i]),
        "contaminated": leak,
        "nearest": [] if text is None else None,
    }


def _untraced_note(untraced: int, test_sets: Mapping[str, Any] | None) -> str | None:
    if not untraced:
        return None
    if test_sets is None:
        return (
            f"{untraced} lost item(s) not traced: the runs hold no test texts; give the "
            "domain test set with --domain FILE.jsonl"
        )
    return f"{untraced} lost item(s) not traced: their task is not among the --domain files"


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _import_bm25s() -> Any:
    """bm25s without numba. Where numba is installed (vLLM's CPU build needs it), bm25s
    imports it, and llvmlite's objects then sit in ``sys.modules``, where a vLLM engine
    loaded later in the same process (the next candidate of a many-candidate compare)
    fails: vLLM scans every module's objects when it registers its kernels, and
    llvmlite's ffi wrappers break that scan (AttributeError in vllm's
    ``triton_utils.dispatcher``). The numpy backend, which is all we use, needs no numba."""
    import sys

    if "numba" in sys.modules:  # already there: hiding it would change nothing
        import bm25s

        return bm25s
    sys.modules["numba"] = None  # type: ignore[assignment]  # import numba -> ImportError
    try:
        import bm25s
    finally:
        del sys.modules["numba"]
    return bm25s


def nearest_samples(
    samples: Sequence[TrainingSample], queries: Sequence[str], k: int = NEAREST_K
) -> list[list[dict[str, Any]]]:
    """Per query, its ``k`` nearest training samples by BM25 (bm25s, Lucene variant) over
    words and CJK characters; samples sharing no token with the query are left out."""
    if not queries or not samples:
        return [[] for _ in queries]
    from collapse_eval.domain.scorers import mixed_tokens

    index = _import_bm25s().BM25()
    index.index([mixed_tokens(s.text) or [""] for s in samples], show_progress=False)
    found, scores = index.retrieve(
        [mixed_tokens(q) or [""] for q in queries],
        k=min(k, len(samples)),
        show_progress=False,
        n_threads=1,
    )
    return [
        [_neighbour(samples[int(j)], float(s)) for j, s in zip(row, hits, strict=True) if s > 0]
        for row, hits in zip(found, scores, strict=True)
    ]


def _neighbour(sample: TrainingSample, similarity: float) -> dict[str, Any]:
    return {
        "id": sample.id,
        "similarity": round(similarity, 4),
        "task_type": sample.task_type,
        "output_format": sample.output_format,
        "score": round(sample.score, 6),
        "flags": list(sample.flags),
        "input": _excerpt(sample.text),
        "response": _excerpt(sample.response),
    }


def _excerpt(text: str) -> str:
    """At most about EXCERPT_CHARS characters: the start and the end (where a question
    after a long dialogue is), joined by an ellipsis."""
    if len(text) <= EXCERPT_CHARS:
        return text
    head = EXCERPT_CHARS // 3
    return text[:head] + " … " + text[-(EXCERPT_CHARS - head) :]


# ---------------------------------------------------------------- terminal lines

_KIND_WORDS = {"task_type": "task types", "output_format": "output formats", "cell": "cells"}


def _pct(value: Any) -> str:
    return "" if value is None else f"{100 * value:+.1f}"


def _slice_name(row: Mapping[str, Any]) -> str:
    parts = [row["task_type"], row["output_format"]]
    return " / ".join(str(p) for p in parts if p is not None)


def training_lines(block: Mapping[str, Any], kind: str = "task_type") -> list[str]:
    """The training block for the terminal: the slices of ``kind`` as a table (delta and
    CI in points), then each correlation across slices and the lost items traced."""
    head = (
        f"training data: {block['source']}, {block['n_samples']} samples, quality "
        f"{block['overall']:.3f} ({block['scored_by']})"
    )
    cells = [["slice", "train", "share", "quality", "flagged", "test", "lost", "delta [95% CI]"]]
    for row in block["slices"]:
        if row["group_by"] != kind:
            continue
        ci = "" if row["ci_low"] is None else f" [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"
        quality = "" if row["quality"] is None else f"{row['quality']:.3f}"
        cells.append(
            [
                _slice_name(row),
                str(row["n_train"]),
                f"{100 * row['share']:.1f}%",
                quality,
                str(row["n_flagged"]),
                str(row["n_test"]),
                str(row["lost"]),
                f"{_pct(row['delta'])}{ci}" if row["delta"] is not None else "no test items",
            ]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = [head]
    for line in cells:
        lines.append("  " + "  ".join(f"{c:<{w}}" for c, w in zip(line, widths, strict=True)))
    lines += [_correlation_line(c) for c in block["correlations"]]
    lines.append(_lost_line(block))
    return lines


def _correlation_line(c: Mapping[str, Any]) -> str:
    what = "training quality" if c["x"] == "quality" else "training share"
    if c["estimate"] is None:
        return f"  {what} vs delta across {_KIND_WORDS[c['group_by']]}: constant, n = {c['n']}"
    ci = "" if c["ci_low"] is None else f" [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"
    p = "" if c["p_value"] is None else f", p = {c['p_value']:.3g} ({c['p_method']})"
    return (
        f"  {what} vs delta across {_KIND_WORDS[c['group_by']]}: spearman "
        f"{c['estimate']:+.2f}{ci}{p}, n = {c['n']}"
    )


def _lost_line(block: Mapping[str, Any]) -> str:
    lost = block["lost"]
    by_type = Counter(
        str(n["task_type"]) for row in lost for n in row["nearest"][:1] if row["nearest"]
    )
    nearest = ", ".join(f"{name} {k}" for name, k in by_type.most_common(3))
    line = f"  lost domain items: {block['n_lost']}"
    if any(row["nearest"] for row in lost):
        line += f"; nearest training sample's task type: {nearest}"
    contaminated = sum(row["contaminated"] is not None for row in lost)
    if block["contamination"]["checked_tasks"]:
        line += f"; {contaminated} lost and {block['contamination']['n_contaminated']} in all "
        line += "near-duplicate a training sample (contaminated)"
    else:
        line += "; contamination not checked (no test texts)"
    note = block.get("lost_not_traced")
    return line + (f" ({note})" if note else "")
