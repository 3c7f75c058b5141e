"""The domain runner: batched engine calls, scoring, record conventions, resume."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.domain.dataset import DomainItem, item_doc_hash, load_domain_set
from collapse_eval.domain.runner import (
    MAX_TOKENS_BY_FORMAT,
    choice_continuation,
    evaluate_domain,
    generation_budgets,
    stop_strings,
)
from collapse_eval.engines.base import GenRequest
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.errors import EngineError
from collapse_eval.records import ItemRecord, RecordWriter, read_records, sha256_text

CHAT = "user: 这套房子多少钱？\nassistant:"  # FakeEngine's plain chat rendering


class RecordingEngine(FakeEngine):
    """FakeEngine that also keeps the requests it received."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gen_requests: list[GenRequest] = []
        self.ll_requests: list[tuple[str, str]] = []

    def generate(self, requests: Sequence[GenRequest]) -> list[str]:
        self.gen_requests += requests
        return super().generate(requests)

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        self.ll_requests += requests
        return super().loglikelihood(requests)


def make_items() -> list[DomainItem]:
    return [
        DomainItem(
            id="i1",
            task_type="intent",
            output_format="label",
            reference="price_inquiry",
            prompt="Intent of: how much?\nIntent:",
            metadata={"cluster": "d1"},
            cluster="d1",
        ),
        DomainItem(
            id="i2",
            task_type="compliance",
            output_format="yes_no",
            reference="no",
            prompt="Compliant? 保证升值\nAnswer:",
        ),
        DomainItem(
            id="i3",
            task_type="price",
            output_format="number",
            reference=3500000,
            messages=(("user", "这套房子多少钱？"),),
        ),
        DomainItem(
            id="i4",
            task_type="extract",
            output_format="json",
            reference={"city": "北京", "bedrooms": 2},
            prompt="Extract:",
        ),
        DomainItem(
            id="i5",
            task_type="intent",
            output_format="label",
            reference="complaint",
            prompt="Intent of: too noisy!\nIntent:",
            choices=("price_inquiry", "complaint"),
        ),
    ]


ANSWERS = {
    "Intent of: how much?\nIntent:": " price_inquiry\nbecause they ask",
    "Compliant? 保证升值\nAnswer:": "No.",
    CHAT: "350万元",
    "Extract:": '```json\n{"city": "北京", "bedrooms": 3}\n```',
}


def run(engine: FakeEngine, items: Sequence[DomainItem], **kwargs: Any) -> list[list[ItemRecord]]:
    batches: list[list[ItemRecord]] = []
    evaluate_domain(engine, items, "realestate", on_batch=batches.append, **kwargs)
    return batches


def test_records_follow_the_contract() -> None:
    engine = RecordingEngine(
        answers=ANSWERS,
        scores={
            ("Intent of: too noisy!\nIntent:", " price_inquiry"): -5.0,
            ("Intent of: too noisy!\nIntent:", " complaint"): -1.0,
        },
    )
    items = make_items()
    (batch,) = run(engine, items)
    # One generate call for the four open items, one loglikelihood call for the ranked one.
    assert engine.calls == [("generate", 4), ("loglikelihood", 2)]
    assert [r.item_id for r in batch] == ["i1", "i2", "i3", "i4", "i5"]
    assert all(
        r.suite == "domain" and r.task == "realestate" and r.metric == "score" for r in batch
    )
    assert [r.score for r in batch] == [1.0, 1.0, 1.0, pytest.approx(0.5), 1.0]
    # The "\n" stop cut the explanation off the label, so it is well-formed.
    assert [r.format_ok for r in batch] == [True, True, True, True, None]
    assert [r.prediction for r in batch] == [
        " price_inquiry",
        "No.",
        "350万元",
        ANSWERS["Extract:"],
        "complaint",
    ]
    assert batch[0].reference == "price_inquiry" and batch[3].reference == {
        "city": "北京",
        "bedrooms": 2,
    }
    assert [r.task_type for r in batch] == ["intent", "compliance", "price", "extract", "intent"]
    assert [r.output_format for r in batch] == ["label", "yes_no", "number", "json", "label"]
    assert batch[0].prompt_hash == sha256_text("Intent of: how much?\nIntent:")
    assert batch[2].prompt_hash == sha256_text(CHAT)  # messages: the rendered chat
    assert [r.doc_hash for r in batch] == [item_doc_hash(i) for i in items]
    assert batch[0].cluster == "d1" and batch[0].metadata == {"cluster": "d1"}
    assert batch[1].cluster is None and batch[1].metadata is None


def test_generation_requests_per_format() -> None:
    engine = RecordingEngine(answers=ANSWERS)
    run(engine, make_items()[:4])
    requests = engine.gen_requests
    # Budgets fit the references (the fake engine has no tokenizer: UTF-8 bytes x 1.5 + 8),
    # capped per format: label 13 bytes and yes_no 2 hit their caps of 16 and 8, the
    # number 3500000 (7 bytes) gets 19, the indented JSON reference (39 bytes) 67.
    assert [r.max_tokens for r in requests] == [16, 8, 19, 67]
    assert [r.until for r in requests] == [("\n\n", "\n")] * 3 + [("\n\n",)]
    assert requests[0].prompt == "Intent of: how much?\nIntent:" and requests[0].messages is None
    assert requests[2].prompt is None and requests[2].messages == (("user", "这套房子多少钱？"),)
    assert set(MAX_TOKENS_BY_FORMAT) == {
        "label",
        "yes_no",
        "number",
        "json",
        "list",
        "span",
        "free_text",
    }
    assert stop_strings("free_text") == ("\n\n",) and stop_strings("span") == ("\n\n", "\n")


def test_choice_ranking_contexts_and_ties() -> None:
    chat_item = DomainItem(
        id="c1",
        task_type="t",
        output_format="yes_no",
        reference="no",
        messages=(("user", "这套房子多少钱？"),),
        choices=("yes", "no"),
    )
    spaced = DomainItem(
        id="c2",
        task_type="t",
        output_format="label",
        reference="b",
        prompt="Pick: ",
        choices=("a", "b"),
    )
    tie = DomainItem(
        id="c3",
        task_type="t",
        output_format="label",
        reference="b",
        prompt="Tie",
        choices=("a", "b"),
    )
    engine = RecordingEngine(
        scores={
            (CHAT, " yes"): -0.5,
            (CHAT, " no"): -2.0,
            ("Pick: ", "a"): -3.0,
            ("Pick: ", "b"): -0.1,
            ("Tie", " a"): -1.0,
            ("Tie", " b"): -1.0,
        }
    )
    (batch,) = run(engine, [chat_item, spaced, tie])
    assert engine.ll_requests == [
        (CHAT, " yes"),
        (CHAT, " no"),
        ("Pick: ", "a"),
        ("Pick: ", "b"),
        ("Tie", " a"),
        ("Tie", " b"),
    ]
    assert [(r.prediction, r.score) for r in batch] == [("yes", 0.0), ("b", 1.0), ("a", 0.0)]
    assert batch[0].prompt_hash == sha256_text(CHAT)
    assert choice_continuation("", "x") == "x" and choice_continuation("q\n", "x") == "x"


def test_batches_progress_and_resume() -> None:
    items = [
        DomainItem(id=f"n{i}", task_type="t", output_format="number", reference=i, prompt=f"q{i}")
        for i in range(5)
    ]
    engine = FakeEngine(answers=lambda prompt: prompt[1:])
    progress: list[int] = []
    batches = run(engine, items, batch_size=2, on_progress=progress.append)
    assert [[r.item_id for r in b] for b in batches] == [["n0", "n1"], ["n2", "n3"], ["n4"]]
    assert progress == [2, 2, 1]  # requests answered: one generation per open item
    assert engine.calls == [("generate", 2), ("generate", 2), ("generate", 1)]
    assert all(r.score == 1.0 and r.format_ok for b in batches for r in b)

    resumed = FakeEngine(answers=lambda prompt: prompt[1:])
    batches = run(resumed, items, batch_size=2, done_item_ids={"n0", "n2", "n3"})
    assert [[r.item_id for r in b] for b in batches] == [["n1", "n4"]]
    assert resumed.calls == [("generate", 2)]

    idle = FakeEngine()
    assert run(idle, items, done_item_ids=[i.id for i in items]) == [] and idle.calls == []


def test_records_round_trip_through_the_writer(tmp_path: Path) -> None:
    engine = FakeEngine(answers=ANSWERS)
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as writer:
        evaluate_domain(
            engine, make_items(), "realestate", on_batch=writer.write_batch, batch_size=3
        )
    records = read_records(path)
    assert [r.item_id for r in records] == ["i1", "i2", "i3", "i4", "i5"]
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first["metadata"] == {"cluster": "d1"} and first["cluster"] == "d1"
    assert records[3].reference == {"city": "北京", "bedrooms": 2}


def test_engine_returning_the_wrong_count_is_an_engine_error() -> None:
    class Short(FakeEngine):
        def generate(self, requests: Sequence[GenRequest]) -> list[str]:
            return super().generate(requests)[:-1]

    with pytest.raises(EngineError, match="1 generations for 2 requests"):
        run(Short(), make_items()[:2])
    with pytest.raises(ValueError, match="batch_size"):
        run(FakeEngine(), make_items(), batch_size=0)


# ------------------------------------------------------------------ tiny real model


def test_evaluate_domain_with_a_tiny_real_model(tiny_model: Path, tmp_path: Path) -> None:
    from collapse_eval.engines.hf import HFEngine

    rows = [
        {
            "id": "p1",
            "task_type": "intent",
            "output_format": "label",
            "prompt": "Intent: price?",
            "reference": "price_inquiry",
        },
        {
            "id": "p2",
            "task_type": "price",
            "output_format": "number",
            "messages": [{"role": "user", "content": "客户的预算是多少？"}],
            "reference": "350万",
        },
        {
            "id": "p3",
            "task_type": "compliance",
            "output_format": "yes_no",
            "prompt": "Compliant?",
            "choices": ["yes", "no"],
            "reference": "no",
        },
        {
            "id": "p4",
            "task_type": "compliance",
            "output_format": "yes_no",
            "messages": [{"role": "user", "content": "Compliant?"}],
            "choices": ["yes", "no"],
            "reference": "yes",
        },
    ]
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    items = load_domain_set(path)
    engine = HFEngine(str(tiny_model), batch_size=4)
    try:
        batches: list[list[ItemRecord]] = []
        evaluate_domain(engine, items, "tiny", on_batch=batches.append)
        (batch,) = batches
        # Batched results equal what the engine gives for the same requests directly,
        # with the budgets the references fit (the number's is below its cap of 24).
        budgets = generation_budgets(items, engine)
        assert budgets["label"] == 16 and 8 < budgets["number"] < 24
        direct = engine.generate(
            [
                GenRequest(prompt="Intent: price?", until=("\n\n", "\n"), max_tokens=16),
                GenRequest(
                    messages=(("user", "客户的预算是多少？"),),
                    until=("\n\n", "\n"),
                    max_tokens=budgets["number"],
                ),
            ]
        )
        assert [batch[0].prediction, batch[1].prediction] == direct
        chat = engine.render_chat((("user", "Compliant?"),))
        assert batch[3].prompt_hash == sha256_text(chat)
        for record, context in ((batch[2], "Compliant?"), (batch[3], chat)):
            (yes, _), (no, _) = engine.loglikelihood(
                [(context, choice_continuation(context, c)) for c in ("yes", "no")]
            )
            assert record.prediction == ("yes" if yes >= no else "no")
            assert record.score == float(record.prediction == record.reference)
            assert record.format_ok is None
        assert all(0.0 <= r.score <= 1.0 for r in batch)
    finally:
        engine.close()
