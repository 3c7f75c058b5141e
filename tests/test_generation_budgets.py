"""Domain generation budgets fit the test set's references (issue 19, item 4): a model that
rambles stops soon after the length of a correct answer, not at the format's cap; every
reference fits its budget; the rule is part of the domain task's spec (manifest, cache)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.domain.dataset import DomainItem, load_domain_set
from collapse_eval.domain.runner import (
    BUDGET_FACTOR,
    BUDGET_SLACK,
    MAX_TOKENS_BY_FORMAT,
    evaluate_domain,
    generation_budgets,
    generation_rule,
    reference_text,
    stop_strings,
    token_counter,
)
from collapse_eval.engines.base import GenRequest
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.records import ItemRecord, load_run
from collapse_eval.runner import RunSpec, domain_task_spec, run_model

ROOT = Path(__file__).resolve().parents[1]
DEMO_TEST_SET = ROOT / "collapse_eval" / "tasks" / "demo" / "realestate_test.jsonl"
RAMBLE = " and so on" * 100  # no newline: only the budget ends it


class Recording(FakeEngine):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests: list[GenRequest] = []

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        self.requests += requests
        return super().generate(requests)


class WithTokenizer(FakeEngine):
    """The fake engine with a real tokenizer, for budgets counted in a model's tokens."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__()
        self._tokenizer = tokenizer


def _item(i: int, output_format: str, reference: Any) -> DomainItem:
    return DomainItem(
        id=f"x{i}",
        task_type="t",
        output_format=output_format,
        reference=reference,
        prompt=f"Q{i}:",
    )


def _records(engine: FakeEngine, items: Sequence[DomainItem], **kw: Any) -> list[ItemRecord]:
    out: list[ItemRecord] = []
    evaluate_domain(engine, items, "t", on_batch=out.extend, **kw)
    return out


def test_a_rambling_answer_stops_at_a_budget_that_fits_the_references() -> None:
    reference = {"city": "Lyon", "rooms": 5}
    items = [_item(0, "json", reference), _item(1, "free_text", "The customer wants to rent.")]
    answers = {"Q0:": " " + json.dumps(reference) + RAMBLE, "Q1:": " The customer wants" + RAMBLE}
    engine = Recording(answers=answers)
    records = _records(engine, items)
    # No tokenizer: UTF-8 bytes of the longest reference x 1.5 + 8, far below the caps of 160.
    json_bytes = len(json.dumps(reference, indent=2).encode())
    assert [r.max_tokens for r in engine.requests] == [
        int(1.5 * json_bytes + 8 + 0.5),
        int(1.5 * len(b"The customer wants to rent.") + 8 + 0.5),
    ]
    assert all(r.max_tokens < 160 for r in engine.requests)
    assert records[0].score == 1.0  # the correct object is whole; only the ramble is cut
    assert len(records[1].prediction.split()) == engine.requests[1].max_tokens


def test_every_reference_of_the_demo_test_set_fits_its_budget(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    items = load_domain_set(DEMO_TEST_SET)
    # The tiny Llama's tokenizer spends about a token per byte: the most a real one needs.
    engine = WithTokenizer(AutoTokenizer.from_pretrained(str(tiny_model)))
    budgets = generation_budgets(items, engine)
    count = token_counter(engine)
    for item in (i for i in items if i.choices is None):
        plain = item.reference if isinstance(item.reference, str) else json.dumps(item.reference)
        for written in (reference_text(item.output_format, item.reference), str(plain)):
            assert count(written) <= budgets[item.output_format], (item.id, written)
    assert set(budgets) == {"label", "yes_no", "number", "json", "list", "span", "free_text"}
    assert all(budgets[f] <= MAX_TOKENS_BY_FORMAT[f] for f in budgets)
    assert budgets["json"] < 160 and budgets["free_text"] < 160
    # Without a tokenizer UTF-8 bytes are counted: still below the caps of 160.
    in_bytes = generation_budgets(items, FakeEngine())
    assert in_bytes["json"] < 160 and in_bytes["free_text"] < 160


def test_budget_formula_and_reference_writing() -> None:
    items = [_item(0, "number", 123456), _item(1, "number", 7), _item(2, "yes_no", True)]
    assert generation_budgets(items, FakeEngine()) == {"number": 17, "yes_no": 8}
    assert (BUDGET_FACTOR, BUDGET_SLACK) == (1.5, 8)
    assert reference_text("list", ["a", "b"]) == "- a\n- b"
    assert reference_text("yes_no", False) == "no"
    assert reference_text("json", {"a": 1}) == '{\n  "a": 1\n}'
    # A format without a listed cap is capped at the default.
    odd = [_item(0, "essay", "x" * 500)]
    assert generation_budgets(odd, FakeEngine()) == {"essay": 128}
    # Ranked items generate nothing, so they need no budget.
    ranked = DomainItem(
        id="r", task_type="t", output_format="label", reference="a", prompt="P", choices=("a",)
    )
    assert generation_budgets([ranked], FakeEngine()) == {}


def test_a_resumed_run_keeps_the_budgets_of_the_whole_set() -> None:
    items = [_item(0, "free_text", "short"), _item(1, "free_text", "a much longer reference " * 3)]
    engine = Recording(default_answer="x")
    _records(engine, items, done_item_ids={"x1"})
    whole = generation_budgets(items, FakeEngine())
    assert [r.max_tokens for r in engine.requests] == [whole["free_text"]]
    assert whole["free_text"] > generation_budgets(items[:1], FakeEngine())["free_text"]


def test_stops_do_not_cut_a_pretty_printed_json_answer() -> None:
    reference = {"city": "Lyon", "extras": {"garden": True}}
    answer = " " + json.dumps(reference, indent=2) + "\nThat is all."
    records = _records(FakeEngine(answers={"Q0:": answer}), [_item(0, "json", reference)])
    assert records[0].prediction == answer and records[0].score == 1.0  # nothing was cut
    assert stop_strings("json") == ("\n\n",) and stop_strings("yes_no") == ("\n\n", "\n")


def test_the_rule_is_in_the_domain_task_spec_manifest_and_log(tmp_path: Path) -> None:
    domain = tmp_path / "d.jsonl"
    row = {"id": "a", "task_type": "t", "output_format": "json", "prompt": "Q"}
    domain.write_text(json.dumps({**row, "reference": {"k": 1}}) + "\n", encoding="utf-8")
    spec = domain_task_spec(domain)
    assert spec["generation"] == generation_rule()
    assert spec["generation"]["caps"]["json"] == 160 and spec["generation"]["factor"] == 1.5
    assert spec["generation"]["stops"]["label"] == ["\n\n", "\n"]

    class Log:
        lines: list[str] = []

        def log(self, message: str) -> None:
            self.lines.append(message)

        def bar(self, label: str, total: int | None) -> Any:
            from collapse_eval.progress import QuietProgress

            return QuietProgress().bar(label, total)

    log = Log()
    run_spec = RunSpec(model="m", domain_files=(domain,), run_general=False, use_cache=False)
    run_model(run_spec, tmp_path / "run", progress=log, engine_factory=lambda s: FakeEngine())
    manifest = load_run(tmp_path / "run").manifest
    assert manifest.tasks["d"].spec is not None
    assert manifest.tasks["d"].spec["generation"] == json.loads(json.dumps(generation_rule()))
    # '{\n  "k": 1\n}' is 12 bytes: 1.5 x 12 + 8 = 26 new tokens.
    assert "domain d: new-token budgets by output format: json 26" in log.lines


@pytest.mark.parametrize("fmt", sorted(MAX_TOKENS_BY_FORMAT))
def test_a_reference_longer_than_the_cap_gets_the_cap(fmt: str) -> None:
    reference: Any = {"k": "v" * 400} if fmt == "json" else "w " * 400
    if fmt == "list":
        reference = ["w"] * 400
    budgets = generation_budgets([_item(0, fmt, reference)], FakeEngine())
    assert budgets == {fmt: MAX_TOKENS_BY_FORMAT[fmt]}
