"""Content-addressed request cache (sqlite, WAL) and an Engine wrapper that uses it.

A cache key is the sha256 of everything that can change an answer: the model fingerprint
(content hash of config + weights for local checkpoints, name@revision for hub names), the
engine kind, the engine's output-affecting arguments (dtype, max_model_len, ...), the
request kind and the full request including its generation parameters. Re-running a
comparison with the same base checkpoint therefore recomputes nothing for the base.

The database lives in one file; several processes may read and write it at once (WAL
mode, a busy timeout, ``INSERT OR IGNORE`` so that two writers of the same key agree).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from collapse_eval.engines.base import Engine, EngineWrapper, GenRequest
from collapse_eval.errors import ConfigError
from collapse_eval.records import canonical_json

CACHE_SCHEMA_VERSION = 1
CACHE_FILENAME = "requests.sqlite"
# sqlite's default limit on bound parameters is 32766 (3.32+); stay far below it.
_QUERY_CHUNK = 500

_log = logging.getLogger("collapse_eval.cache")

T = TypeVar("T")
R = TypeVar("R")


def default_cache_dir() -> Path:
    """The per-user cache directory (``platformdirs.user_cache_dir('collapse-eval')``)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("collapse-eval"))


class RequestCache:
    """A key -> JSON value store in one sqlite file under ``cache_dir``.

    Values are stored as JSON text; Python floats round-trip exactly through ``repr``.
    One connection per instance, guarded by a lock so that engine worker threads may share it.

    The cache only saves work, so its faults never stop a run: a file that is not an sqlite
    database (garbage, truncated) is moved aside to ``requests.sqlite.corrupt-<time>`` and
    a new cache is started; a database locked by another process for longer than
    ``timeout_s``, or one that fails later (corruption found mid-run, disk errors), is
    bypassed for the rest of this process (every request is computed). Each case logs one
    warning on the ``collapse_eval.cache`` logger, shown on stderr.
    """

    def __init__(self, cache_dir: str | Path | None = None, *, timeout_s: float = 60.0) -> None:
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{directory}: cannot create the cache directory ({exc.strerror}). "
                "Pass a writable --cache-dir or use --no-cache."
            ) from exc
        self.path = directory / CACHE_FILENAME
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.bypassed: str | None = None  # why the cache is not used, once it is not
        try:
            self._conn = self._open()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise self._unusable(exc) from exc
            self._bypass(f"it stayed locked by another process for {timeout_s:g} s ({exc})")
        except sqlite3.DatabaseError as exc:  # not a database: garbage bytes, truncated
            self._conn = self._rebuild(exc)

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE takes the
        # write lock up front, so two writers queue on busy_timeout instead of deadlocking).
        conn = sqlite3.connect(
            self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS entries ("
                " key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL)"
            )
            conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM entries LIMIT 1)").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _rebuild(self, error: sqlite3.DatabaseError) -> sqlite3.Connection | None:
        """Move a corrupt database (and its WAL files) aside and start an empty one."""
        import time

        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            for suffix in ("", "-wal", "-shm"):
                part = self.path.with_name(self.path.name + suffix)
                if part.exists():
                    part.replace(aside.with_name(aside.name + suffix))
            conn = self._open()
        except (OSError, sqlite3.DatabaseError) as exc:
            self._bypass(f"it is not a usable database ({error}) and could not be rebuilt ({exc})")
            return None
        _log.warning(
            "warning: request cache %s was not a usable database (%s); moved it to %s and "
            "started an empty cache (answers will be recomputed once)",
            self.path,
            error,
            aside,
        )
        return conn

    def _unusable(self, exc: sqlite3.Error) -> ConfigError:
        return ConfigError(
            f"{self.path}: cannot open the request cache ({exc}). "
            "Delete the file, pass another --cache-dir, or use --no-cache."
        )

    def _bypass(self, why: str) -> None:
        """Stop using the cache for this process; results stay right, only slower."""
        if self.bypassed is None:
            _log.warning(
                "warning: request cache %s is not used: %s. Every request is computed; "
                "pass another --cache-dir or --no-cache to silence this.",
                self.path,
                why,
            )
            self.bypassed = why
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The stored values of those ``keys`` that are present."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        with self._lock:
            if self._conn is None:
                return found
            try:
                for start in range(0, len(wanted), _QUERY_CHUNK):
                    chunk = wanted[start : start + _QUERY_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = self._conn.execute(
                        f"SELECT key, value FROM entries WHERE key IN ({marks})", chunk
                    ).fetchall()
                    found.update((key, json.loads(value)) for key, value in rows)
            except (sqlite3.DatabaseError, ValueError) as exc:  # locked, corrupt, bad JSON
                self._bypass(f"reading it failed ({exc})")
                return {}
        return found

    def put_many(self, kind: str, items: Mapping[str, Any]) -> None:
        """Store ``items`` in one transaction; an existing key keeps its first value."""
        rows = [(key, kind, json.dumps(value)) for key, value in items.items()]
        if not rows:
            return
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(
                        "INSERT OR IGNORE INTO entries (key, kind, value) VALUES (?, ?, ?)", rows
                    )
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:  # locked beyond the timeout, disk full, ...
                self._bypass(f"writing to it failed ({exc})")

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                return 0
            (count,) = self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@dataclass
class CacheStats:
    """Per-wrapper counters (requests answered from the cache vs sent to the engine)."""

    hits: int = 0
    misses: int = 0

    def describe(self) -> str:
        """``1,234 requests, all from cache`` / ``1,234 requests, 1,000 from cache``."""
        total = self.hits + self.misses
        cached = "all" if self.misses == 0 else f"{self.hits:,}"
        return f"{total:,} requests, {cached} from cache"


def engine_identity(engine: Engine) -> dict[str, Any]:
    """What identifies an engine's answers: weights, backend and output-affecting args."""
    return {
        "schema": CACHE_SCHEMA_VERSION,
        "fingerprint": engine.fingerprint,
        "engine": engine.kind,
        "engine_args": engine.engine_args,
    }


def request_key(identity: Mapping[str, Any], request_kind: str, request: Any) -> str:
    """The content address of one request (see module docstring)."""
    payload = dict(identity, request_kind=request_kind, request=request)
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _gen_request_identity(req: GenRequest) -> dict[str, Any]:
    return {
        "prompt": req.prompt,
        "messages": [list(m) for m in req.messages] if req.messages is not None else None,
        "until": list(req.until),
        "max_tokens": req.max_tokens,
        "params": sorted([k, v] for k, v in req.params),
    }


class CacheStore(Protocol):
    """What ``CachedEngine`` needs of a cache: a ``RequestCache``, or on a Ray worker the
    driver's cache reached through the cluster (collapse_eval/distributed.py)."""

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]: ...

    def put_many(self, kind: str, items: Mapping[str, Any]) -> None: ...


class CachedEngine(EngineWrapper):
    """Wraps any Engine: answers cached requests, sends only the misses, in one batch.

    Duplicate requests within one call are computed once. Results are written to the cache
    right after the inner engine returns, so an interrupted run keeps what it computed.
    Every other member of the Engine protocol (generation budget, tokenizer, chat
    template and rendering, identity) is passed through by ``EngineWrapper``.
    """

    def __init__(
        self,
        engine: Engine,
        cache: CacheStore,
        *,
        on_first_miss: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(engine)
        self.cache = cache
        self.stats = CacheStats()
        # Called once, with the number of requests to compute, before the engine is first
        # asked for anything (a lazy engine loads its weights then).
        self.on_first_miss = on_first_miss
        # Engine identity (fingerprint hashes weight files) is fixed for the engine's life.
        self._identity: dict[str, Any] | None = None

    def _keys(self, request_kind: str, requests: Sequence[Any]) -> list[str]:
        if self._identity is None:
            self._identity = engine_identity(self.inner)
        return [request_key(self._identity, request_kind, r) for r in requests]

    def _cached_call(
        self,
        request_kind: str,
        requests: Sequence[T],
        identities: Sequence[Any],
        compute: Callable[[list[T]], list[R]],
        decode: Callable[[Any], R],
    ) -> list[R]:
        keys = self._keys(request_kind, identities)
        found = self.cache.get_many(keys)
        missing: dict[str, T] = {}
        for key, req in zip(keys, requests, strict=True):
            if key not in found and key not in missing:
                missing[key] = req
        self.stats.hits += sum(1 for key in keys if key in found)
        self.stats.misses += len(keys) - sum(1 for key in keys if key in found)
        if missing:
            if self.on_first_miss is not None:
                notify, self.on_first_miss = self.on_first_miss, None
                notify(len(missing))
            computed = compute(list(missing.values()))
            if len(computed) != len(missing):
                raise RuntimeError(
                    f"{self.inner.kind} engine returned {len(computed)} results "
                    f"for {len(missing)} {request_kind} requests"
                )
            fresh = dict(zip(missing, computed, strict=True))
            self.cache.put_many(request_kind, fresh)
            # Round-trip through JSON so that hits and misses return identical types.
            found.update(json.loads(json.dumps(fresh)))
        return [decode(found[key]) for key in keys]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        return self._cached_call(
            "loglikelihood",
            requests,
            [[ctx, cont] for ctx, cont in requests],
            self.inner.loglikelihood,
            lambda v: (float(v[0]), bool(v[1])),
        )

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        return self._cached_call(
            "loglikelihood_rolling", texts, list(texts), self.inner.loglikelihood_rolling, float
        )

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        return self._cached_call(
            "generate",
            requests,
            [_gen_request_identity(r) for r in requests],
            self.inner.generate,
            str,
        )


# ---------------------------------------------------------------- whole tasks

TASK_KIND = "task"
IDENTITY_KIND = "engine-identity"


def task_key(fingerprint: str, run_spec: Mapping[str, Any], suite: str, task_spec: Any) -> str:
    """The content address of one task's results (a domain file, a benchmarks entry).

    ``run_spec`` holds the engine kind and its output-affecting arguments, the seed and the
    versions; ``task_spec`` what decides the task (file content, entry, limit, task files):
    the same facts a resumed run compares before it keeps a task.
    """
    payload = {
        "schema": CACHE_SCHEMA_VERSION,
        "kind": TASK_KIND,
        "fingerprint": fingerprint,
        "run_spec": run_spec,
        "suite": suite,
        "task_spec": task_spec,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def identity_key(fingerprint: str, kind: str, requested_args: Mapping[str, Any]) -> str:
    """Where an engine's resolved ``engine_args`` are remembered for these inputs.

    The resolved arguments (e.g. the hf engine's max_length, read from the checkpoint's
    config and tokenizer) follow from the checkpoint files (in ``fingerprint``), the
    arguments as given and the installed versions of the libraries that resolve them.
    """
    payload = {
        "schema": CACHE_SCHEMA_VERSION,
        "kind": IDENTITY_KIND,
        "fingerprint": fingerprint,
        "engine": kind,
        "requested": dict(requested_args),
        "versions": _library_versions(("transformers", "torch", "tokenizers", "vllm")),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _library_versions(names: Sequence[str]) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found
