"""The records contract (docs/formats.md#run-directory): manifest.json + records.jsonl = a run.

Everything written to disk carries ``schema_version``. Writes of whole files are
atomic (temp file + rename); records are appended and flushed per batch so an
interrupted run can resume without losing or duplicating records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec

from collapse_eval.errors import CollapseEvalWarning, InputError, InputErrors, os_error
from collapse_eval.formats.record import RECORD_DECODER, RecordLine
from collapse_eval.versioning import Migration, upgrade

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
RECORDS_FILE = "records.jsonl"
SUITES = ("domain", "general")


def sha256_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Stable JSON text for hashing: sorted keys, no whitespace, unicode kept. ``default``
    as in ``json.dumps``: what to write for a value JSON cannot hold (None: TypeError)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default
    )


# version v -> a function that lifts a record / manifest of version v to v + 1; version 1
# is the first, so none yet. A format change bumps SCHEMA_VERSION and adds an entry.
RECORD_MIGRATIONS: dict[int, Migration] = {}
MANIFEST_MIGRATIONS: dict[int, Migration] = {}


def check_schema_version(
    obj: dict[str, Any], kind: str, *, path: str | Path, line: int | None = None
) -> dict[str, Any]:
    """``obj`` migrated to SCHEMA_VERSION; InputError (exit 2) for a newer or unknown one.

    ``kind`` is RECORDS_FILE (a record without schema_version is taken as current) or
    MANIFEST_FILE (the field is required).
    """
    is_record = kind == RECORDS_FILE
    return upgrade(
        obj,
        kind=kind,
        current=SCHEMA_VERSION,
        migrations=RECORD_MIGRATIONS if is_record else MANIFEST_MIGRATIONS,
        path=path,
        line=line,
        default=SCHEMA_VERSION if is_record else None,
    )


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One (suite, task, item, metric) outcome. Pairing key: (suite, task, item_id, metric)."""

    suite: str
    task: str
    item_id: str
    metric: str
    score: float
    task_type: str | None = None
    output_format: str | None = None
    format_ok: bool | None = None
    prediction: str | None = None
    reference: Any = None
    prompt_hash: str | None = None
    # Extensions (optional, documented in README): a hash of the source document so that
    # runs over different data refuse to pair, and a cluster id for clustered errors.
    doc_hash: str | None = None
    cluster: str | None = None
    metadata: Mapping[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.suite, self.task, self.item_id, self.metric)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        # schema_version first, then the contract order; omit empty extensions.
        ordered: dict[str, Any] = {"schema_version": out.pop("schema_version")}
        for name in ("doc_hash", "cluster", "metadata"):
            if out[name] is None:
                out.pop(name)
        if out.get("metadata") is not None:
            out["metadata"] = dict(out["metadata"])
        ordered.update(out)
        return ordered


_RECORD_FIELDS = {f.name for f in dataclasses.fields(ItemRecord)}
_RECORD_REQUIRED = ("suite", "task", "item_id", "metric", "score")


def record_from_json(
    obj: Any, *, path: str | Path = "<records>", line: int | None = None
) -> ItemRecord:
    """Validate one decoded JSON object into an ItemRecord, or raise InputError."""
    check_record_json(obj, path=path, line=line)
    version = obj.get("schema_version", SCHEMA_VERSION)
    return ItemRecord(**{**obj, "score": float(obj["score"]), "schema_version": version})


def check_record_json(obj: Any, *, path: str | Path = "<records>", line: int | None = None) -> None:
    """Raise InputError (file, line, field) unless ``obj`` is a valid record object."""

    def fail(message: str, fld: str | None = None) -> InputError:
        return InputError(path, message, line=line, field=fld)

    if not isinstance(obj, dict):
        raise fail("expected a JSON object")
    obj = check_schema_version(obj, RECORDS_FILE, path=path, line=line)
    for name in _RECORD_REQUIRED:
        if name not in obj:
            raise fail("missing required field", name)
    unknown = set(obj) - _RECORD_FIELDS
    if unknown:
        raise fail(f"unknown field(s): {', '.join(sorted(unknown))}", sorted(unknown)[0])
    if obj["suite"] not in SUITES:
        raise fail(f"must be one of {', '.join(SUITES)}, got {obj['suite']!r}", "suite")
    for name in ("task", "item_id", "metric"):
        if not isinstance(obj[name], str) or not obj[name]:
            raise fail("must be a non-empty string", name)
    score = obj["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)) or score != score:
        raise fail(f"must be a number, got {score!r}", "score")
    if obj.get("format_ok") is not None and not isinstance(obj["format_ok"], bool):
        raise fail("must be true, false or null", "format_ok")


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """Per-task facts in the manifest. ``primary_metric`` decides what is compared."""

    suite: str
    primary_metric: str | None = None
    n: int | None = None
    margin: float | None = None
    version: str | None = None
    num_fewshot: int | None = None
    config_hash: str | None = None
    higher_is_better: bool = True
    # What decided this task's results (domain: the file's content hash; general: the
    # benchmarks entry and the effective limit) and its hash, compared on resume.
    spec: Mapping[str, Any] | None = None
    spec_hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in _TASKINFO_ORDER if getattr(self, k) is not None}
        if "spec" in out:
            out["spec"] = dict(out["spec"])
        return out


@dataclass(frozen=True, slots=True)
class RunManifest:
    model: str
    model_fingerprint: str | None = None
    engine: str | None = None
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    collapse_eval_version: str | None = None
    lm_eval_version: str | None = None
    tasks: Mapping[str, TaskInfo] = field(default_factory=dict)
    seed: int | None = None
    complete: bool = False
    # Run-level settings that decide every task's results (engine kind, output-affecting
    # engine args, seed, versions), their hash, and the engine as requested on the command
    # line (lets a finished run be recognised without loading the model). Optional keys:
    # manifests written before they existed have none, and resuming recomputes every task.
    run_spec: Mapping[str, Any] | None = None
    run_spec_hash: str | None = None
    engine_request: Mapping[str, Any] | None = None
    # `compare --sequential` on a checkpoint: the candidate was evaluated in rounds and
    # stopped once the gate's verdict was known, so its tasks hold only the items the
    # design looked at (docs/formats.md#sequential-run). None: a full run.
    sequential: Mapping[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        optional: dict[str, Any] = {
            name: dict(value)
            for name in ("run_spec", "engine_request", "sequential")
            if (value := getattr(self, name)) is not None
        }
        if self.run_spec_hash is not None:
            optional["run_spec_hash"] = self.run_spec_hash
        return {
            "schema_version": self.schema_version,
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "engine": self.engine,
            "engine_args": dict(self.engine_args),
            "created_at": self.created_at,
            "collapse_eval_version": self.collapse_eval_version,
            "lm_eval_version": self.lm_eval_version,
            "seed": self.seed,
            "complete": self.complete,
            **optional,
            "tasks": {name: info.to_json() for name, info in self.tasks.items()},
        }


_MANIFEST_FIELDS = {f.name for f in dataclasses.fields(RunManifest)}
_TASKINFO_ORDER = tuple(f.name for f in dataclasses.fields(TaskInfo))
_TASKINFO_FIELDS = set(_TASKINFO_ORDER)


def manifest_from_json(obj: Any, *, path: str | Path = MANIFEST_FILE) -> RunManifest:
    if not isinstance(obj, dict):
        raise InputError(path, "expected a JSON object")
    obj = check_schema_version(obj, MANIFEST_FILE, path=path)
    for name in ("schema_version", "model"):
        if name not in obj:
            raise InputError(path, "missing required field", field=name)
    unknown = set(obj) - _MANIFEST_FIELDS
    if unknown:
        raise InputError(
            path, f"unknown field(s): {', '.join(sorted(unknown))}", field=sorted(unknown)[0]
        )
    tasks: dict[str, TaskInfo] = {}
    raw_tasks = obj.get("tasks") or {}
    if not isinstance(raw_tasks, dict):
        raise InputError(path, "must be an object of task name -> info", field="tasks")
    for name, info in raw_tasks.items():
        if not isinstance(info, dict) or "suite" not in info:
            raise InputError(path, "each task needs at least a 'suite'", field=f"tasks.{name}")
        extra = set(info) - _TASKINFO_FIELDS
        if extra:
            raise InputError(
                path, f"unknown field(s): {', '.join(sorted(extra))}", field=f"tasks.{name}"
            )
        tasks[name] = TaskInfo(**info)
    kwargs = {k: v for k, v in obj.items() if k != "tasks"}
    kwargs["engine_args"] = kwargs.get("engine_args") or {}
    # The runner always writes `complete`; a manifest without it was written by hand
    # (or by another tool) and is taken as finished.
    kwargs.setdefault("complete", True)
    return RunManifest(**kwargs, tasks=tasks)


# ---------------------------------------------------------------- file I/O


def decode_json(text: str | bytes) -> Any:
    """``json.loads``, with the two failures it does not report as a JSONDecodeError
    (nesting deeper than Python's recursion limit, integers over 4300 digits) turned
    into one, so that every reader reports them as invalid JSON on their line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply (over ~1000 levels)", "", 0) from None
    except ValueError as exc:  # int_max_str_digits
        raise json.JSONDecodeError(f"a number is too long ({exc})", "", 0) from None


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0o666 less the process umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a whole file so that readers see the old or the new content, never half.

    The file gets the usual permissions (umask), not the 0600 of a temporary file. A path
    that cannot be a file is a UsageError (exit 2); a full disk a StorageError (exit 3).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise os_error(exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), file_mode())
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise os_error(exc, path=path) from None
        raise


def atomic_write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _is_a_directory(path: Path) -> InputError:
    """A directory given where a JSON file is expected; name a JSON file inside it (not a
    hidden one: `.examples.json` is the report's cache, never what was meant)."""
    inside = sorted(p.name for p in path.glob("*.json") if not p.name.startswith("."))[:3]
    hint = f"did you mean {path / inside[0]}?" if inside else "give the path of a JSON file"
    return InputError(path, "is a directory, expected a JSON file", hint=hint)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise _is_a_directory(path) from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise os_error(exc) from None
    try:
        return decode_json(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None


# One item is a prompt and a reference (or a dialogue, a review line); a line this long is
# a whole document or a binary pasted by mistake, and would only waste memory.
MAX_LINE_BYTES = 16 * 1024 * 1024


def iter_jsonl(
    path: str | Path, problems: list[InputError] | None = None
) -> Iterator[tuple[int, Any]]:
    """(line number, decoded JSON) per non-blank line of a JSONL file.

    A bad line (over MAX_LINE_BYTES, not UTF-8, not JSON) is an InputError naming the file,
    line and what to do: raised, or, given ``problems``, appended there and skipped, so a
    reader can report every problem at once. Lines end at "\n" only: a JSON string written
    with ``ensure_ascii=False`` may hold U+2028 or a lone "\r", which ``splitlines`` would
    cut at. A byte-order mark (from some editors) before the first line is dropped.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, expected a .jsonl file") from None
    except OSError as exc:
        raise os_error(exc) from None
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            value = _jsonl_value(path, lineno, raw)
        except InputError as problem:
            if problems is None:
                raise
            problems.append(problem)
            continue
        yield lineno, value


def _jsonl_value(path: Path, lineno: int, raw: bytes) -> Any:
    """One line of ``iter_jsonl`` decoded, or the InputError that says what is wrong."""
    if len(raw) > MAX_LINE_BYTES:
        raise InputError(
            path,
            f"line is {len(raw) / 2**20:.0f} MB, over the "
            f"{MAX_LINE_BYTES // 2**20} MB limit for one item",
            line=lineno,
            hint="one item per line: a prompt and its reference, not a whole document",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            path,
            f"not UTF-8 text ({exc.reason} at byte {exc.start})",
            line=lineno,
            hint="save the file as UTF-8",
        ) from None
    if lineno == 1:
        text = text.removeprefix("\ufeff")
    try:
        return decode_json(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            path,
            f"invalid JSON: {exc.msg} (column {exc.colno})",
            line=lineno,
            hint="each line must be one JSON object",
        ) from None


def _record_lines(path: Path) -> tuple[list[bytes], bool]:
    """The raw lines of records.jsonl and whether the last one lacks its newline."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise os_error(exc) from None
    return data.split(b"\n"), bool(data) and not data.endswith(b"\n")


def decode_record_line(raw: bytes, *, path: Path, line: int) -> RecordLine | None:
    """One line of records.jsonl as a RecordLine, or None for a blank line.

    msgspec's decoder takes every valid line at C speed; a line it refuses is decoded and
    checked again by ``check_record_json``, which raises the InputError that names the
    file, line and field. Invalid JSON is raised as ``json.JSONDecodeError`` for the
    caller to tell a torn last line from a bad one.
    """
    try:
        return RECORD_DECODER.decode(raw)
    except msgspec.DecodeError:
        pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})", line=line) from None
    if not text.strip():
        return None
    obj = decode_json(text)
    check_record_json(obj, path=path, line=line)
    return RecordLine(**obj)


def item_record(line: RecordLine) -> ItemRecord:
    # The two have the same fields; a line the reference check took may hold an int score.
    return ItemRecord(**{**msgspec.structs.asdict(line), "score": float(line.score)})


def read_records(path: str | Path, *, tolerate_torn_tail: bool = True) -> list[ItemRecord]:
    """Read records.jsonl, validating every line; report all problems at once.

    A last line without a newline that does not parse is the trace of a run killed
    mid-write; with ``tolerate_torn_tail`` it is dropped (the run will redo it) and a
    ``CollapseEvalWarning`` names the file and line.
    """
    path = Path(path)
    lines, torn_tail = _record_lines(path)
    records: list[ItemRecord] = []
    problems: list[InputError] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    for index, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = decode_record_line(raw, path=path, line=index)
        except InputError as err:
            problems.append(err)
            continue
        except json.JSONDecodeError as exc:
            if torn_tail and index == len(lines) and tolerate_torn_tail:
                warnings.warn(torn_line_message(path, index), CollapseEvalWarning, stacklevel=2)
                break
            problems.append(InputError(path, f"invalid JSON: {exc.msg}", line=index))
            continue
        if line is None:
            continue
        rec = item_record(line)
        if rec.key in seen:
            problems.append(
                InputError(
                    path,
                    f"duplicate record {rec.key} (first on line {seen[rec.key]})",
                    line=index,
                    field="item_id",
                )
            )
            continue
        seen[rec.key] = index
        records.append(rec)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputErrors(path, problems)
    return records


def torn_line_message(path: Path, line: int) -> str:
    return (
        f"{path}:{line}: the last line is cut short (the run was stopped while writing it); "
        "it is skipped. Run the same `collapse-eval run` again to redo that item."
    )


class RecordWriter:
    """Appends records to records.jsonl, flushed and fsynced per batch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._repair_torn_tail()
            self._fh: IO[str] = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise os_error(exc) from None

    def _repair_torn_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        try:
            json.loads(data[cut:])
        except ValueError:  # the half-written last line of a killed process: cut it
            with self.path.open("r+b") as fh:
                fh.truncate(cut)
            return
        # A whole record that lacks only its newline: read_records counts it as done, so
        # keep it (cutting it would lose the record: resume would not redo it).
        with self.path.open("ab") as fh:
            fh.write(b"\n")

    def write_batch(self, records: Iterable[ItemRecord]) -> None:
        text = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)
        if not text:
            return
        try:
            self._fh.write(text)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise os_error(exc, path=self.path) from None

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Run:
    """A loaded run directory."""

    path: Path
    manifest: RunManifest
    records: tuple[ItemRecord, ...]

    def primary_metric(self, task: str) -> str | None:
        """The task's primary metric: named in the manifest, else its only metric."""
        info = self.manifest.tasks.get(task)
        if info is not None and info.primary_metric:
            return info.primary_metric
        metrics = {r.metric for r in self.records if r.task == task}
        return next(iter(metrics)) if len(metrics) == 1 else None


def is_run_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / MANIFEST_FILE).is_file() and (path / RECORDS_FILE).is_file()


def read_run_manifest(path: str | Path) -> RunManifest:
    """The manifest of the run directory ``path`` (InputError if it is not a directory)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(
            path,
            f"not a directory (expected a run directory with {MANIFEST_FILE} and {RECORDS_FILE})",
        )
    return manifest_from_json(read_json(path / MANIFEST_FILE), path=path / MANIFEST_FILE)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    manifest = read_run_manifest(path)
    records = read_records(path / RECORDS_FILE)
    return Run(path=path, manifest=manifest, records=tuple(records))


def write_manifest(run_dir: str | Path, manifest: RunManifest) -> None:
    atomic_write_json(Path(run_dir) / MANIFEST_FILE, manifest.to_json())
