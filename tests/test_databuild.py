"""`collapse-eval data build`: the spec, the screening rules and the pipeline's logic.

The pipeline tests here use the fake engine (answers are a function of the prompt) to
check logic: lineage, counts, the split, stage skipping, the cache, the review file,
resume after a crash. The real model runs are in test_databuild_e2e.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cli import main
from collapse_eval.databuild import BuildOptions, build, load_spec
from collapse_eval.databuild.pipeline import FILES, REVIEW_FILE, read_jsonl
from collapse_eval.databuild.screen import clean_instruction, format_problem, parse_label
from collapse_eval.databuild.spec import TaskSpec
from collapse_eval.demo.dialogues import DIALOGUES_FILE, dialogue_records
from collapse_eval.domain.dataset import load_domain_set, load_training_set
from collapse_eval.engines.base import Engine, GenRequest
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.errors import ConfigError, InputError, InputErrors

EXAMPLE_SPEC = DIALOGUES_FILE.parent / "realestate_build.yaml"

SMALL_SPEC = """\
domain: real-estate customer service
roles: {provider: real-estate agent, customer: customer}
dialogues: dialogues.jsonl
seed: 0
task_types:
  intent_classification:
    description: what the customer wants
    output_format: label
    labels: [rent, buy, viewing, complaint]
    weight: 2
    seeds: ["What does the customer want? Answer with one of: rent, buy, viewing, complaint."]
  compliance:
    description: whether the agent disclosed the agency fee
    output_format: yes_no
    seeds: ["Did the agent disclose the agency fee? Answer yes or no."]
  entity_extraction:
    description: the city, number of rooms and budget the customer names
    output_format: json
    keys: [city, rooms, budget]
    seeds: ["Extract city, rooms and budget as JSON."]
construction: {styles: [formal, terse, colloquial], max_tokens: 40}
evolution: {operators: [explicit_schema, add_constraint], generations: 2, per_prompt: 1}
labeling: {prompts_per_dialogue: 2, max_tokens: 24, batch_size: 4}
split: {test_fraction: 0.25}
"""


def write_spec(tmp_path: Path, text: str = SMALL_SPEC, n_dialogues: int = 8) -> Path:
    rows = dialogue_records(n_dialogues)
    (tmp_path / "dialogues.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def fake_answer(prompt: str) -> str:
    """A generator that follows instructions roughly: rewrites keep the format statement,
    labels are well-formed for most formats."""
    question = prompt.split("\n\n")[-1]
    if "Reply with the new instruction only" in prompt:
        parent = re.search(r"Instruction: (.*?)\n", prompt)
        assert parent is not None
        extra = " Say which words of the dialogue decided it." if "constraint" in prompt else ""
        return f"Read the dialogue carefully, then {parent.group(1).lower()}{extra}"
    if "Reply with the instruction only" in prompt:
        fmt = re.search(r"must be (.*?)\.\n", prompt)
        style = re.search(r"in (a .*?) style", prompt)
        assert fmt is not None and style is not None
        return f"Instruction: In {style.group(1)} manner, label this dialogue; give {fmt.group(1)}."
    if "JSON" in question:
        return '{"city": "Berlin", "rooms": 3, "budget": 1000}'
    if "yes or no" in question:
        return "yes"
    return "rent"


class CountingFake(FakeEngine):
    """The fake engine, counting the requests it answers (as a real engine would see)."""

    requests = 0

    def generate(self, requests: Any) -> list[str]:
        CountingFake.requests += len(requests)
        return super().generate(requests)


def run_build(
    spec_path: Path, out: Path, *, answers: Any = fake_answer, cache: Path | None = None, **kw: Any
) -> dict[str, Any]:
    options = BuildOptions(
        generator="fake-model",
        engine="fake",
        cache_dir=cache,
        use_cache=cache is not None,
        force=kw.pop("force", False),
    )
    factory = kw.pop("factory", lambda model: CountingFake(model, answers=answers))
    return build(load_spec(spec_path), options, out, factory=factory, **kw).report


def files(out: Path) -> dict[str, Any]:
    """Every output file's bytes; quality.json without its timings."""
    found: dict[str, Any] = {
        name: (out / name).read_bytes()
        for name in FILES.values()
        if name not in ("build.json", "quality.json")
    }
    quality = json.loads((out / "quality.json").read_text())
    quality.pop("cost")
    found["quality.json"] = quality
    return found


# ------------------------------------------------------------------ spec


def test_the_example_spec_loads_and_names_all_seven_output_formats() -> None:
    spec = load_spec(EXAMPLE_SPEC)
    assert spec.dialogues == DIALOGUES_FILE
    assert {t.output_format for t in spec.task_types} == {
        "label",
        "yes_no",
        "number",
        "json",
        "list",
        "span",
        "free_text",
    }
    assert spec.task("entity_extraction").keys == ("city", "rooms", "budget")


def test_shipped_dialogues_are_the_demo_training_dialogues_bit_for_bit() -> None:
    expected = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in dialogue_records())
    assert DIALOGUES_FILE.read_text(encoding="utf-8") == expected
    test_set = (DIALOGUES_FILE.parent / "realestate_test.jsonl").read_text(encoding="utf-8")
    shipped = [json.loads(line)["text"] for line in expected.splitlines()]
    assert len(shipped) == 60
    assert not [text for text in shipped if json.dumps(text)[1:-1] in test_set]


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (("seed: 0", "sead: 0"), 4, "unknown key 'sead' in the top level. Did you mean 'seed'?"),
        (("    weight: 2", "    wieght: 2"), 10, "Did you mean 'weight'?"),
        (("output_format: yes_no", "output_format: yesno"), 14, "Did you mean 'yes_no'?"),
        (
            ("output_format: yes_no\n", "output_format: yes_no\n    labels: [a, b]\n"),
            15,
            "only output_format label takes labels",
        ),
        (("generations: 2", "generations: -1"), 22, "must be an integer >= 0"),
        (("[explicit_schema,", "[explicit_shema,"), 22, "Did you mean 'explicit_schema'?"),
        (("dialogues: dialogues.jsonl", "dialogues: nope.jsonl"), 3, "not a file"),
    ],
)
def test_spec_errors_name_file_line_and_a_fix(
    tmp_path: Path, edit: tuple[str, str], line: int, message: str
) -> None:
    assert edit[0] in SMALL_SPEC
    path = write_spec(tmp_path, SMALL_SPEC.replace(edit[0], edit[1]))
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert f"{path}:{line}" in str(err.value)
    assert message in str(err.value)


def test_a_label_task_without_labels_is_refused(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path, SMALL_SPEC.replace("    labels: [rent, buy, viewing, complaint]\n", "")
    )
    with pytest.raises(ConfigError, match=r"spec.yaml:6: field 'labels': .* needs 'labels'"):
        load_spec(path)


def test_cli_exits_2_on_a_bad_spec_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(tmp_path, SMALL_SPEC.replace("split:", "splitt:"))
    code = main(
        ["data", "build", str(path), "--generator", "no-such-model", "--out", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"{path}:24: unknown key 'splitt'" in err and "Did you mean 'split'?" in err


# ------------------------------------------------------------------ screening


LABEL_TASK = TaskSpec("intent", "what", "label", ("q",), labels=("rent", "buy", "send_listings"))
JSON_TASK = TaskSpec("extract", "what", "json", ("q",), keys=("city", "rooms"))


def test_format_statement_rules() -> None:
    assert format_problem(LABEL_TASK, "Answer with rent, buy or send listings.") is None
    assert format_problem(LABEL_TASK, "Answer with rent or buy.") == (
        "does not name the label(s) send_listings"
    )
    assert format_problem(JSON_TASK, "Give JSON with city and rooms.") is None
    assert format_problem(JSON_TASK, "Give city and rooms.") == "does not ask for JSON"
    yes_no = TaskSpec("fee", "what", "yes_no", ("q",))
    assert format_problem(yes_no, "Was the fee named? Yes or no.") is None
    assert format_problem(yes_no, "Was the fee named?") == "does not ask for yes or no"


def test_labels_parse_with_the_domain_scorers_and_the_spec_sets() -> None:
    assert parse_label(LABEL_TASK, "Send listings") == ("send_listings", None)
    assert (
        parse_label(LABEL_TASK, "sell")[1] == "label 'sell' is not one of rent, buy, send_listings"
    )
    assert parse_label(JSON_TASK, 'Sure: {"city": "Lyon", "rooms": 2, "x": 1}') == (
        {"city": "Lyon", "rooms": 2},
        None,
    )
    assert parse_label(JSON_TASK, '{"city": "Lyon"}')[1] == "JSON lacks key(s) rooms"
    number = TaskSpec("area", "what", "number", ("q",))
    assert parse_label(number, "85 m2") == (85.0, None)
    assert parse_label(number, "about eighty")[1] == "does not parse as number"


def test_clean_instruction_drops_prefixes_quotes_and_chatter() -> None:
    assert clean_instruction('Instruction: "Say yes or no."\n\nHope this helps!') == (
        "Say yes or no."
    )


# ------------------------------------------------------------------ the pipeline (fake engine)


def test_build_writes_consistent_files_with_lineage(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    report = run_build(spec, out)
    prompts = read_jsonl(out / "prompts.jsonl")
    by_id = {p["id"]: p for p in prompts}
    assert len(by_id) == len(prompts)
    for p in prompts:
        if p["stage"] == "seed":
            assert p["parent"] is None and p["generation"] == 0
        elif p["stage"] == "construction":
            assert by_id[p["parent"]]["stage"] == "seed" and p["generation"] == 0
        else:
            parent = by_id[p["parent"]]
            assert parent["status"] == "accepted"
            assert p["generation"] == parent["generation"] + 1
            assert p["operator"] in ("explicit_schema", "add_constraint")
    st = report["stages"]
    assert st["seeds"]["prompts"] == 3
    assert st["construction"]["candidates"] == 3 * 3
    assert st["evolution"]["candidates"] == sum(p["stage"] == "evolution" for p in prompts)
    assert {p["generation"] for p in prompts if p["stage"] == "evolution"} == {1, 2}
    assert report["operators"]["construct:formal"]["candidates"] == 3
    # 8 dialogues, 2 held out, 2 prompts each on the other 6; 3 test items per test dialogue.
    assert (len(report["split"]["train_dialogues"]), len(report["split"]["test_dialogues"])) == (
        6,
        2,
    )
    assert st["labeling"]["train_labeled"] == 12
    assert st["labeling"]["test_items"] + st["labeling"]["test_unparseable"] == 6
    train = load_training_set(out / "train.jsonl")
    test = load_domain_set(out / "test.jsonl")
    rejected = read_jsonl(out / "rejected.jsonl")
    assert st["quality"]["kept"] == len(train)
    assert len(train) + st["quality"]["rejected"] + st["labeling"]["train_unparseable"] == 12
    assert len(rejected) == report["counts"]["rejected"]
    assert all(r["reasons"] for r in rejected)
    train_dialogues = {t.metadata["dialogue_id"] for t in train}
    test_dialogues = {t.cluster for t in test}
    assert train_dialogues <= set(report["split"]["train_dialogues"])
    assert test_dialogues <= set(report["split"]["test_dialogues"])
    assert not train_dialogues & test_dialogues and report["split"]["overlap"] == []
    for sample in train:
        assert by_id[sample.metadata["prompt_id"]]["status"] == "accepted"
        assert sample.metadata["prompt_operator"] == by_id[sample.metadata["prompt_id"]]["operator"]
    # Test items ask the seed instruction and carry the parsed silver label.
    assert {t.metadata["prompt_operator"] for t in test} == {"seed"}
    assert {t.reference for t in test if t.task_type == "compliance"} == {"yes"}
    assert (
        report["diversity"]["after_evolution"]["n_prompts"] == report["counts"]["prompts_accepted"]
    )


def test_two_builds_are_identical_and_a_rerun_skips_every_stage(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    run_build(spec, tmp_path / "a")
    run_build(spec, tmp_path / "b")
    assert files(tmp_path / "a") == files(tmp_path / "b")

    def refuse(model: str) -> Engine:
        raise AssertionError("an up-to-date build must not load a model")

    report = run_build(spec, tmp_path / "a", factory=refuse)
    assert not any(report["stages"][s]["ran"] for s in ("construction", "evolution", "labeling"))
    assert files(tmp_path / "a") == files(tmp_path / "b")


def test_forced_rerun_is_answered_by_the_cache(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    CountingFake.requests = 0
    first = run_build(spec, tmp_path / "out", cache=tmp_path / "cache")
    assert first["cost"]["this_run"]["calls"] == CountingFake.requests > 0
    CountingFake.requests = 0
    again = run_build(spec, tmp_path / "out", cache=tmp_path / "cache", force=True)
    assert CountingFake.requests == 0
    assert again["cost"]["this_run"]["calls"] == 0
    # Every request is a hit (requests repeated within one call count each time).
    assert again["cost"]["this_run"]["cached"] >= first["cost"]["this_run"]["calls"]


def test_a_crashed_build_resumes_from_the_cache_and_ends_identical(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    run_build(spec, tmp_path / "clean")

    class Crash(Exception):
        pass

    class Crashing(FakeEngine):
        calls_left = 5  # generate() calls before the "kill" (chunks of batch_size 4)

        def generate(self, requests: Any) -> list[str]:
            if Crashing.calls_left == 0:
                raise Crash
            Crashing.calls_left -= 1
            return super().generate(requests)

    out, cache = tmp_path / "out", tmp_path / "cache"
    with pytest.raises(Crash):
        run_build(spec, out, cache=cache, factory=lambda m: Crashing(m, answers=fake_answer))
    CountingFake.requests = 0
    report = run_build(spec, out, cache=cache)
    # Construction had finished: skipped. Evolution's chunks done before the crash: cached.
    assert not report["stages"]["construction"]["ran"]
    assert report["stages"]["evolution"]["ran"]
    assert report["stages"]["evolution"]["cost"]["cached"] > 0
    assert report["cost"]["this_run"]["calls"] == CountingFake.requests
    assert files(out) == files(tmp_path / "clean")


def test_junk_generator_is_reported_and_labeling_falls_back_to_seeds(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    report = run_build(spec, out, answers=lambda prompt: "Sure! ...")
    st = report["stages"]
    assert st["construction"]["accepted"] == 0 and st["evolution"]["candidates"] == 3
    assert st["evolution"]["accepted"] == 0
    assert st["construction"]["reasons"]["format"] == 9
    assert st["labeling"]["pool_sizes"] == {
        "intent_classification": 1,
        "compliance": 1,
        "entity_extraction": 1,
    }
    # Every label is junk: nothing is kept, and every sample is in rejected.jsonl with a reason.
    assert st["labeling"]["train_unparseable"] == 12 and report["counts"]["train"] == 0
    assert report["counts"]["rejected"] == 12 + 6
    assert report["coverage"]["prompts"]["covered"] == 0


def test_review_file_is_honoured_on_the_next_run(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    run_build(spec, out)
    prompts = read_jsonl(out / "prompts.jsonl")
    used = {s["metadata"]["prompt_id"] for s in read_jsonl(out / "labeled.jsonl")}
    generated = sorted(p for p in used if not p.startswith("seed-"))
    assert generated
    rejected_one = next(p for p in prompts if p["status"] == "rejected")
    review = [{"id": pid, "decision": "reject"} for pid in generated]
    review.append({"id": rejected_one["id"], "decision": "accept", "note": "fine by me"})
    (out / REVIEW_FILE).write_text("".join(json.dumps(r) + "\n" for r in review))
    report = run_build(spec, out)
    assert report["stages"]["labeling"]["ran"] and not report["stages"]["evolution"]["ran"]
    assert report["stages"]["labeling"]["review"] == {"accept": 1, "reject": len(generated)}
    now_used = {s["metadata"]["prompt_id"] for s in read_jsonl(out / "labeled.jsonl")}
    assert not now_used & set(generated)


def test_review_file_with_an_unknown_id_exits_2_naming_the_line(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    run_build(spec, out)
    (out / REVIEW_FILE).write_text('\n{"id": "p-nope", "decision": "reject"}\n')
    with pytest.raises(InputError, match=r"prompts.review.jsonl:2: field 'id': no prompt"):
        run_build(spec, out)


def test_bad_dialogue_lines_are_all_reported(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    with (tmp_path / "dialogues.jsonl").open("a") as fh:
        fh.write('{"id": "dlg-train-0001", "text": "again"}\n{"id": "x", "txt": "y"}\n')
    with pytest.raises(InputErrors) as err:
        run_build(spec, tmp_path / "out")
    text = str(err.value)
    assert "dialogues.jsonl:9: field 'id': duplicate id" in text
    assert "dialogues.jsonl:10: field 'txt': unknown field" in text


def test_dialogues_with_the_same_text_stay_on_one_side(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    rows = dialogue_records(8)
    rows += [{"id": f"copy-{r['id']}", "text": r["text"]} for r in rows]
    (tmp_path / "dialogues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = run_build(spec, tmp_path / "out")
    test_ids = set(report["split"]["test_dialogues"])
    for row in rows[:8]:
        assert (row["id"] in test_ids) == (f"copy-{row['id']}" in test_ids)


def test_cli_build_with_the_fake_engine_is_refused_as_an_engine_choice(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    code = main(
        ["data", "build", str(spec), "--generator", "m", "--engine", "fake", "--out", str(tmp_path)]
    )
    assert code == 2


def test_request_helper_chunks_engine_calls() -> None:
    from collapse_eval.databuild.construct import generate_all

    engine = FakeEngine(default_answer="ok")
    out = generate_all(engine, [GenRequest(prompt=str(i)) for i in range(10)], batch_size=4)
    assert out == ["ok"] * 10
    assert engine.calls == [("generate", 4), ("generate", 4), ("generate", 2)]


def test_readme_shows_the_shipped_example_spec_verbatim() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Building training data", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert blocks == [EXAMPLE_SPEC.read_text(encoding="utf-8")]
