"""`collapse-eval data build` in Chinese: the spec's languages, the Chinese screening rules
(format statements, lengths in characters, the language kept), echo and invented-answer
screening, coverage warnings and ``require_coverage``, progress per request, and the
shipped Chinese spec built end to end with the fake engine and scored by `compare`."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cli import main
from collapse_eval.databuild import BuildOptions, build, load_spec
from collapse_eval.databuild.languages import CHINESE, ENGLISH, detect_language
from collapse_eval.databuild.pipeline import read_jsonl
from collapse_eval.databuild.report import CoverageError
from collapse_eval.databuild.screen import (
    echo_problem,
    format_problem,
    invented_answer,
    language_problem,
    length_problem,
    most_similar,
)
from collapse_eval.databuild.spec import TaskSpec
from collapse_eval.domain.dataset import load_domain_set, load_training_set
from collapse_eval.engines.fake import FakeEngine
from collapse_eval.errors import ConfigError
from collapse_eval.progress import StepProgress

ZH_DIR = Path(__file__).resolve().parents[1] / "collapse_eval" / "tasks" / "zh"
ZH_SPEC = ZH_DIR / "realestate_zh_build.yaml"

INTENT = TaskSpec(
    "intent", "客户想做什么", "label", ("x",), labels=("租房", "买房", "看房", "投诉")
)
YES_NO = TaskSpec("fee", "是否说明中介费", "yes_no", ("x",))
JSON_TASK = TaskSpec(
    "entities", "城市、房间数和预算", "json", ("x",), keys=("city", "rooms", "budget")
)
NUMBER = TaskSpec("area", "面积", "number", ("x",))
LIST = TaskSpec("amenities", "配套设施", "list", ("x",))


# ------------------------------------------------------------------ the spec


def spec_text(languages: str) -> str:
    text = ZH_SPEC.read_text(encoding="utf-8")
    return text.replace("languages: [Chinese]", f"languages: {languages}").replace(
        "dialogues: realestate_zh_dialogues.jsonl",
        f"dialogues: {ZH_DIR / 'realestate_zh_dialogues.jsonl'}",
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("[Chinese]", ("Chinese",)),
        ("[zh, en]", ("Chinese", "English")),
        ("[中文, English]", ("Chinese", "English")),
        ("[ENGLISH]", ("English",)),
    ],
)
def test_languages_are_named_by_name_or_code_and_stored_canonically(
    tmp_path: Path, written: str, expected: tuple[str, ...]
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text(written), encoding="utf-8")
    assert load_spec(path).languages == expected


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("[Chinese, French]", "unsupported language 'French'"),
        ("[ja]", "unsupported language 'ja'"),
        ("[zh, Chinese]", "names Chinese twice"),
    ],
)
def test_a_language_the_code_cannot_screen_is_refused_naming_the_supported_ones(
    tmp_path: Path, written: str, message: str
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text(written), encoding="utf-8")
    line = 1 + spec_text(written).splitlines().index(
        f"languages: {written}       # or zh, 中文; English and Chinese are supported"
    )
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert f"{path}:{line}: field 'languages'" in str(err.value)
    assert message in str(err.value)
    if "unsupported" in message:
        assert "English (en), Chinese (zh, 中文)" in str(err.value)


def test_cli_refuses_an_unsupported_language_with_exit_2_before_any_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text("[Klingon]"), encoding="utf-8")
    args = ["data", "build", str(path), "--generator", "/nope", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "unsupported language 'Klingon'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_require_coverage_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        spec_text("[zh]").replace("require_coverage: false", "require_coverage: yes please")
    )
    with pytest.raises(ConfigError, match="field 'require_coverage': must be true or false"):
        load_spec(path)


# ------------------------------------------------------------------ screening rules


def test_chinese_format_statements_are_recognised() -> None:
    assert (
        format_problem(INTENT, "客户想做什么？只能回答以下之一：租房、买房、看房、投诉。") is None
    )
    assert format_problem(INTENT, "客户想做什么？回答租房或买房。") == (
        "does not name the label(s) 看房, 投诉"
    )
    assert format_problem(YES_NO, "经纪人有没有说明中介费？请回答是或否。") is None
    assert format_problem(YES_NO, "经纪人有没有说明中介费？回答“是”／“否”。") is None
    assert format_problem(YES_NO, "经纪人是否说明了中介费？") == "does not ask for yes or no"
    assert format_problem(JSON_TASK, "请以JSON格式回答，包含键：city、rooms、budget。") is None
    assert format_problem(JSON_TASK, "请以JSON格式回答，包含城市和预算。") == (
        "does not name the JSON key(s) city, rooms, budget"
    )
    assert format_problem(NUMBER, "客户需要多大面积？请只回答一个数字。") is None
    assert format_problem(NUMBER, "客户需要多大的房子？") == "does not ask for a number"
    assert format_problem(LIST, "请列出客户要求的配套设施，用顿号分隔。") is None
    assert format_problem(LIST, "客户要求了什么？") == "does not ask for a list"


def test_lengths_are_counted_in_characters_for_chinese_and_words_for_english() -> None:
    assert length_problem("是否满意？") == "too short (4 characters, at least 6)"
    assert length_problem("客户满意吗？请回答是或否。") is None
    long_zh = "请" * 50
    assert length_problem(long_zh, max_words=20) == "too long (50 characters, at most 40)"
    assert length_problem(long_zh, max_words=20, base=10) is None
    assert length_problem("Answer yes or no.") is None
    assert length_problem("yes or no") == "too short (3 words, at least 4)"
    # The old rule counted each character as a word: 4 words was enough for Chinese.
    assert length_problem("回答是否") is not None


def test_the_language_of_a_prompt_is_detected_and_checked() -> None:
    assert (
        detect_language("请提取城市、房间数和预算，以JSON格式回答，包含键：city、rooms、budget。")
        == CHINESE
    )
    assert detect_language("Extract city, rooms and budget as JSON.") == ENGLISH
    assert language_problem("Answer yes or no.", CHINESE) == "asked for Chinese, written in English"
    assert language_problem("请回答是或否。", CHINESE) is None


def test_novelty_is_rouge_l_on_characters_for_chinese() -> None:
    pool = [("p-1", "客户想做什么？只能回答以下之一：租房、买房、看房、投诉。")]
    near = most_similar("客户想要做什么？只能回答以下之一：租房、买房、看房、投诉。", pool)
    far = most_similar("请判断这段对话的目的，从租房、买房、看房、投诉中选一个。", pool)
    assert near.id == "p-1" and near.score > 0.9
    assert 0.2 < far.score < 0.7
    # rouge-score's own tokenizer drops every CJK character: both would score 0.
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"]).score(pool[0][1], "客户想要做什么？")
    assert default["rougeL"].fmeasure == 0.0


def test_a_prompt_echoing_the_operators_request_is_rejected() -> None:
    from collapse_eval.databuild.evolve import _template

    template = _template("add_example")
    echoed = (
        "Rewrite the instruction so that it includes one short example of a correct answer. "
        "Did the agent disclose the fee? Answer yes or no."
    )
    assert echo_problem(echoed, template) == (
        "repeats the request: 'includes one short example of'"
    ) or "repeats the request" in str(echo_problem(echoed, template))
    tail = "Did the agent disclose the fee? Answer yes or no. Reply with the new instruction only."
    assert "repeats the request" in str(echo_problem(tail, _template("add_constraint")))
    # Doing what the operator asked is not an echo.
    good = "Check the evidence in the dialogue before deciding, then answer yes or no."
    assert echo_problem(good, _template("reason_first")) is None


@pytest.mark.parametrize(
    ("task", "text", "found"),
    [
        (
            INTENT,
            "客户想做什么？只能回答以下之一：租房、买房、看房、投诉。答案是：租房。",
            "'租房'",
        ),
        (
            INTENT,
            "What does the customer want? One of: 租房, 买房, 看房, 投诉. The answer is 买房.",
            "'买房'",
        ),
        (
            YES_NO,
            "Did the agent disclose the fee? Answer yes or no. The correct answer is yes.",
            "'yes'",
        ),
        (YES_NO, "经纪人有没有说明中介费？请回答是或否。答案：否", "'no'"),
        (NUMBER, "How many m2? Answer with a number. Answer: 45", "'45.0'"),
        (
            JSON_TASK,
            'Extract city, rooms, budget as JSON: {"city": "Munich", "rooms": 3, "budget": 2400}',
            "Munich",
        ),
        (LIST, '列出配套设施（列表）：["电梯", "阳台"]', "电梯"),
    ],
)
def test_a_prompt_stating_an_invented_answer_is_rejected(
    task: TaskSpec, text: str, found: str
) -> None:
    problem = invented_answer(task, text)
    assert problem is not None and problem.startswith("states the answer") and found in problem


@pytest.mark.parametrize(
    ("task", "text"),
    [
        (INTENT, "What does the customer want? Answer with one of: 租房, 买房, 看房, 投诉."),
        (INTENT, "The answer is one of 租房, 买房, 看房, 投诉."),
        (YES_NO, "The answer is yes or no."),
        (YES_NO, "经纪人有没有说明中介费？答案是“是”或“否”。"),
        (NUMBER, "How large is the flat? Answer: a number of m2."),
        (JSON_TASK, 'Reply as JSON: {"city": "", "rooms": 0, "budget": 0}'),
        (JSON_TASK, 'Reply as JSON, for example {"city": "Berlin", "rooms": 2, "budget": 900}.'),
        (JSON_TASK, 'Reply as JSON: {"city": "<city>", "rooms": "number", "budget": "..."}'),
        (LIST, 'Answer as a JSON list of strings, e.g. ["elevator", "balcony"].'),
    ],
)
def test_format_descriptions_and_framed_examples_are_not_invented_answers(
    task: TaskSpec, text: str
) -> None:
    assert invented_answer(task, text) is None


# ------------------------------------------------------------------ the Chinese build

CITIES = ("上海", "北京", "杭州", "成都", "深圳", "南京", "广州", "武汉")
DISTRICTS = ("浦东新区", "朝阳区", "西湖区", "锦江区", "南山区", "鼓楼区", "天河区", "江汉区")
NUMERALS = {"一": 1, "两": 2, "三": 3, "四": 4}


def dialogue_of(prompt: str) -> str:
    # The rendered chat may put a role name before the dialogue's first line.
    return "\n".join(re.findall(r"(?:客户|经纪人)：[^\n]*", prompt))


def true_label(task: str, dialogue: str) -> Any:
    """What the Chinese dialogues say, read from their text (they were written to say it)."""
    first = dialogue.splitlines()[0]
    if task == "intent":
        for words, label in (("投诉|生气|租客", "投诉"), ("买", "买房"), ("租", "租房")):
            if re.search(words, first):
                return label
        return "看房"
    if task == "fee_disclosed":
        return "是" if re.search("中介费|服务费", dialogue) else "否"
    if task == "entities":
        city = next((c for c in CITIES if c in dialogue), None)
        rooms = re.search("([一两三四])(?:室|居室)", dialogue)
        budget = re.search(r"(?:每个月|总价)(\d+)", dialogue)
        return {
            "city": city,
            "rooms": NUMERALS[rooms.group(1)] if rooms else None,
            "budget": int(budget.group(1)) if budget else None,
        }
    if task == "area":
        found = re.search(r"(\d+)平方米", dialogue)
        return found.group(1) if found else "0"
    if task == "amenities":
        found = re.search("(?:需要有|最好有)(.*?)。", dialogue)
        return found.group(1) if found else "无"
    if task == "district":
        return next((d for d in DISTRICTS if d in dialogue), "未提及")
    return "客户和房产经纪人谈了房子的事。"


def task_of(instruction: str) -> str:
    for words, task in (
        ("JSON", "entities"),
        ("是或否", "fee_disclosed"),
        ("数字", "area"),
        ("列出|顿号", "amenities"),
        ("哪个区", "district"),
        ("概括", "summary"),
    ):
        if re.search(words, instruction):
            return task
    return "intent"


STYLES_ZH = {
    "formal": "请仔细阅读对话，并判断{d}。答案必须是{f}。",
    "colloquial": "看看这段聊天：{d}？直接给我{f}就行。",
    "terse": "{d}——{f}",
}


def zh_answer(prompt: str) -> str:
    """A generator that writes Chinese prompts and correct Chinese labels."""
    if "Reply with the new instruction only" in prompt:
        parent = re.search(r"Instruction: (.*?)\n", prompt)
        assert parent is not None and "Write it in Chinese." in prompt
        assert "Add at most 80 characters." in prompt  # max_added_words: 40, doubled
        if "constraint" in prompt:
            return f"{parent.group(1)}如果对话里没有明确说，请以客户最后一句话为准。"
        return f"先在对话中找到依据，再作答：{parent.group(1)}"
    if "Reply with the instruction only" in prompt:
        fmt = re.search(r"\(in Chinese: (.*?)\)\.\n", prompt)
        desc = re.search(r"Task: (.*?)\.\n", prompt)
        style = next(s for s in STYLES_ZH if s.replace("_", "-") in prompt or s in prompt)
        assert fmt is not None and desc is not None
        return "Instruction: " + STYLES_ZH[style].format(d=desc.group(1), f=fmt.group(1))
    task = task_of(prompt.split("\n\n")[-1])
    value = true_label(task, dialogue_of(prompt))
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value)


def build_zh(out: Path, spec: Path = ZH_SPEC, **kw: Any) -> dict[str, Any]:
    options = BuildOptions(generator="fake-zh", engine="fake", use_cache=False)
    factory = kw.pop("factory", lambda model: FakeEngine(model, answers=zh_answer))
    return build(load_spec(spec), options, out, factory=factory, **kw).report


@pytest.fixture(scope="module")
def zh_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("zh") / "out"
    return out, build_zh(out)


def test_the_shipped_chinese_dialogues_are_distinct_and_a_few_hundred_characters() -> None:
    rows = [
        json.loads(line)
        for line in (ZH_DIR / "realestate_zh_dialogues.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    assert len(rows) == 24 and len({r["text"] for r in rows}) == 24
    assert all(180 <= len(r["text"]) <= 400 for r in rows)
    assert all(detect_language(r["text"]) == CHINESE for r in rows)


def test_a_chinese_build_runs_end_to_end_with_chinese_prompts_and_parseable_labels(
    zh_build: tuple[Path, dict[str, Any]],
) -> None:
    out, report = zh_build
    st = report["stages"]
    assert all(st[s]["ran"] for s in ("construction", "evolution", "labeling", "quality"))
    prompts = read_jsonl(out / "prompts.jsonl")
    made = [p for p in prompts if p["stage"] != "seed"]
    assert {p["language"] for p in prompts} == {"Chinese"}
    # 7 task types x 3 styles; every variant states its format in Chinese.
    assert st["construction"]["candidates"] == 21
    assert st["construction"]["accepted"] == 13 and st["evolution"]["accepted"] >= 1
    # Only novelty (ROUGE-L on characters) rejects: the Chinese format statements, lengths
    # and language pass. (The English rules rejected every one: no "yes", no "number".)
    assert {r.split(":")[0] for p in made for r in p["reasons"]} == {"novelty"}
    train = read_jsonl(out / "train.jsonl")
    # The split keeps the five pairs of near-identical dialogues (the same scene told twice,
    # Jaccard 0.71-0.76 on characters) on one side each: 17 train, 7 test dialogues.
    split = report["split"]
    assert (len(split["train_dialogues"]), len(split["test_dialogues"])) == (17, 7)
    assert len(split["merged"]) == 5
    assert (
        len(train) == 17 * 3 - st["quality"]["rejected"]
        and st["labeling"]["train_unparseable"] == 0
    )
    load_training_set(out / "train.jsonl")
    items = load_domain_set(out / "test.jsonl")
    assert len(items) == 7 * 7 and st["labeling"]["test_unparseable"] == 0
    assert report["coverage"]["missing"] == {"train": [], "test": []}
    assert report["warnings"] == []
    by_task = {i.task_type: i for i in items}
    assert by_task["entities"].reference.keys() == {"city", "rooms", "budget"}
    assert by_task["fee_disclosed"].reference in ("yes", "no")
    assert isinstance(by_task["area"].reference, float)


def test_chinese_test_references_match_what_the_dialogues_say(
    zh_build: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = zh_build
    dialogues = {
        json.loads(line)["id"]: json.loads(line)["text"]
        for line in (ZH_DIR / "realestate_zh_dialogues.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    }
    for item in read_jsonl(out / "test.jsonl"):
        truth = true_label(item["task_type"], dialogues[item["metadata"]["dialogue_id"]])
        expected = {
            "fee_disclosed": {"是": "yes", "否": "no"}.get(str(truth)),
            "amenities": [] if truth == "无" else str(truth).split("、"),
            "area": float(truth) if isinstance(truth, str) and truth.isdigit() else None,
        }.get(item["task_type"], truth)
        assert item["reference"] == expected, item


def test_compare_scores_the_built_chinese_test_set_with_the_scorers(
    zh_build: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`compare --domain` on the built test.jsonl: a tuned model answering the dialogues in
    Chinese (full-width digits, 、 lists, 是/否) scores 1 on every item; a base model that
    answers 不确定 scores 0."""
    out, _ = zh_build

    def tuned(prompt: str) -> str:
        answer = zh_answer(prompt)
        return (
            answer.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
            if answer.isdigit()
            else answer
        )

    def make_engine(kind: str | None, model: str, engine_args: Any) -> FakeEngine:
        return FakeEngine(model, answers=tuned if model == "tuned" else (lambda _: "不确定"))

    monkeypatch.setattr("collapse_eval.engines.registry.make_engine", make_engine)
    # the made-up model names are not checkpoints: skip compare's check that they exist
    monkeypatch.setattr("collapse_eval.runner._check_model_source", lambda *args: None)
    cmp = tmp_path / "cmp"
    args = ["compare", "base", "tuned", "--domain", str(out / "test.jsonl"), "--no-general"]
    code = main([*args, "--engine", "hf", "--no-cache", "-q", "--out", str(cmp)])
    assert code in (0, 1)
    scores: dict[str, list[float]] = {}
    for path in cmp.rglob("records.jsonl"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        model = json.loads((path.parent / "manifest.json").read_text())["model"]
        scores[model] = [r["score"] for r in rows if r.get("suite") == "domain"]
    assert len(scores["tuned"]) == 7 * 7 and set(scores["tuned"]) == {1.0}
    assert set(scores["base"]) == {0.0}


# ------------------------------------------------------------------ coverage


def english_answer_without_json(prompt: str) -> str:
    from tests.test_databuild import fake_answer

    answer = fake_answer(prompt)
    return "no json here" if answer.startswith("{") else answer


def test_a_build_missing_task_types_warns_naming_them_and_records_it(tmp_path: Path) -> None:
    from tests.test_databuild import write_spec

    spec = write_spec(tmp_path)
    said: list[str] = []
    options = BuildOptions(generator="fake-model", engine="fake", use_cache=False)
    report = build(
        load_spec(spec),
        options,
        tmp_path / "out",
        factory=lambda m: FakeEngine(m, answers=english_answer_without_json),
        say=said.append,
    ).report
    assert report["coverage"]["missing"] == {
        "train": ["entity_extraction"],
        "test": ["entity_extraction"],
    }
    assert report["warnings"] == [
        f"{split}.jsonl covers 2 of 3 task types; missing: entity_extraction (no usable label: "
        "see the reasons in rejected.jsonl and labeling_rejected.jsonl)"
        for split in ("train", "test")
    ]
    assert [s for s in said if s.startswith("warning: ")] == [
        f"warning: {w}" for w in report["warnings"]
    ]


def test_require_coverage_fails_the_build_with_exit_1_after_writing_its_files(
    tmp_path: Path,
) -> None:
    from tests.test_databuild import SMALL_SPEC, write_spec

    spec = write_spec(tmp_path, "require_coverage: true\n" + SMALL_SPEC)
    options = BuildOptions(generator="fake-model", engine="fake", use_cache=False)
    with pytest.raises(CoverageError) as err:
        build(
            load_spec(spec),
            options,
            tmp_path / "out",
            factory=lambda m: FakeEngine(m, answers=english_answer_without_json),
        )
    assert err.value.exit_code == 1
    assert (
        "require_coverage: train.jsonl covers 2 of 3 task types; missing: entity_extraction"
        in str(err.value)
    )
    assert json.loads((tmp_path / "out" / "build.json").read_text())["coverage"]["missing"][
        "train"
    ] == ["entity_extraction"]


def test_require_coverage_passes_a_build_that_covers_every_task_type(
    zh_build: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text("[zh]").replace("require_coverage: false", "require_coverage: true"))
    report = build_zh(tmp_path / "out", spec)
    assert report["warnings"] == []


# ------------------------------------------------------------------ echo / invented answers


def test_a_build_rejects_echoed_and_answer_stating_rewrites_with_named_reasons(
    tmp_path: Path,
) -> None:
    from tests.test_databuild import fake_answer, write_spec

    def answers(prompt: str) -> str:
        if "Reply with the new instruction only" in prompt:
            parent = re.search(r"Instruction: (.*?)\n", prompt)
            assert parent is not None
            if "constraint" in prompt:
                echo = "Rewrite the instruction so that it adds one more constraint."
                return f"{echo} {parent.group(1)}"
            if "JSON" in parent.group(1):
                return f'{parent.group(1)} {{"city": "Munich", "rooms": 3, "budget": 2400}}'
            return (
                f"{parent.group(1)} The answer is yes."
                if "yes or no" in parent.group(1)
                else f"{parent.group(1)} The answer is rent."
            )
        return fake_answer(prompt)

    spec = write_spec(tmp_path)
    report = build(
        load_spec(spec),
        BuildOptions(generator="fake-model", engine="fake", use_cache=False),
        tmp_path / "out",
        factory=lambda m: FakeEngine(m, answers=answers),
    ).report
    evolved = [
        p for p in read_jsonl(tmp_path / "out" / "prompts.jsonl") if p["stage"] == "evolution"
    ]
    assert evolved and all(p["status"] == "rejected" for p in evolved)
    reasons = report["stages"]["evolution"]["reasons"]
    assert reasons.get("echo", 0) > 0 and reasons.get("invented_answer", 0) > 0
    assert reasons["echo"] + reasons["invented_answer"] >= len(evolved)


# ------------------------------------------------------------------ progress


def test_build_progress_counts_requests_per_stage(tmp_path: Path) -> None:
    from tests.test_databuild import fake_answer, write_spec

    stream = io.StringIO()
    spec = write_spec(tmp_path)
    build(
        load_spec(spec),
        BuildOptions(generator="fake-model", engine="fake", use_cache=False),
        tmp_path / "out",
        factory=lambda m: FakeEngine(m, answers=fake_answer),
        progress=StepProgress(stream, interval=60.0),
    )
    lines = stream.getvalue().splitlines()
    ends = {line.split(":")[0] + ":" + line.split(":")[1]: line for line in lines}
    # 3 task types x 3 styles; 6 training dialogues x 2 prompts; 2 test dialogues x 3 types.
    assert re.match(
        r"construction: prompt variants: 9/9 requests", ends["construction: prompt variants"]
    )
    assert re.match(r"labeling: train labels: 12/12 requests", ends["labeling: train labels"])
    assert re.match(r"labeling: test labels: 6/6 requests", ends["labeling: test labels"])
    assert any(line.startswith("evolution 1/2: rewrites: ") for line in lines)
    assert any(line.startswith("evolution 1/2: probes: ") for line in lines)
    assert any(line.startswith("evolution 2/2: rewrites: ") for line in lines)


def test_step_progress_writes_when_the_count_moves_a_tenth_not_on_every_item() -> None:
    stream = io.StringIO()
    with StepProgress(stream, interval=3600.0, step=0.1).bar("labeling: train labels", 100) as bar:
        for _ in range(100):
            bar.advance()
    counts = [int(m.group(1)) for m in re.finditer(r": (\d+)/100 requests", stream.getvalue())]
    assert counts == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


@pytest.mark.parametrize("answer", ["无", "没有", "none", "[]"])
def test_a_stated_empty_list_is_the_label_empty_list(answer: str) -> None:
    from collapse_eval.databuild.screen import parse_label

    assert parse_label(LIST, answer) == ([], None)
    assert parse_label(LIST, "电梯、停车位和阳台") == (["电梯", "停车位", "阳台"], None)
