"""Seeded synthetic data for the demo world: real-estate dialogues and small general tasks.

Everything here is a pure function of its seed (``random.Random``), so
``scripts/make_demo_data.py`` regenerates the committed files bit-identically and the
demo's training data is the same on every machine.

Domain: short dialogues between a real-estate agent and a customer (rent, buy, viewing,
complaint) turned into test items of nine task types and seven output formats (see
docs/formats.md), plus a training split in the training-set format (prompt/messages +
response) none of whose dialogues equals or near-duplicates a test dialogue. General:
four tasks a ~1.5M-parameter model can learn (addition, capitals, copying, sorting),
written as lm-eval documents for ``tasks/demo_general``; their training items are drawn
from the same generators and exclude every test item.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Dialogue",
    "DOMAIN_SYSTEM_PROMPT",
    "GENERAL_TASKS",
    "make_dialogues",
    "domain_items",
    "domain_test_set",
    "domain_train_set",
    "general_test_docs",
    "general_train_pairs",
    "unlabelled_dialogue_texts",
    "write_jsonl",
    "write_all",
    "TASKS_DIR",
]

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"

# Seeds: distinct streams so that test and training dialogues never coincide (also checked).
TEST_SEED = 1001
TRAIN_SEED = 2002
UNLABELLED_SEED = 3003
GENERAL_SEED = 4004

DOMAIN_SYSTEM_PROMPT = "You analyse dialogues between a real-estate agent and a customer."

CITIES: dict[str, tuple[str, ...]] = {
    "Berlin": ("Mitte", "Pankow", "Wedding"),
    "Hamburg": ("Altona", "Eimsbuettel", "Harburg"),
    "Munich": ("Schwabing", "Pasing", "Giesing"),
    "Vienna": ("Leopoldstadt", "Favoriten", "Hietzing"),
    "Zurich": ("Oerlikon", "Wiedikon", "Altstetten"),
    "Lyon": ("Croix-Rousse", "Confluence", "Vaise"),
    "Madrid": ("Salamanca", "Chamberi", "Retiro"),
    "Lisbon": ("Alfama", "Belem", "Estrela"),
}
AMENITIES = ("balcony", "parking", "elevator", "garden", "furnished")
AMENITY_PHRASES = {
    "balcony": "a balcony",
    "parking": "parking",
    "elevator": "an elevator",
    "garden": "a garden",
    "furnished": "furniture",
}
INTENTS = ("rent", "buy", "viewing", "complaint")
SATISFACTION = ("satisfied", "neutral", "dissatisfied")
NEXT_ACTIONS = (
    "schedule_viewing",
    "send_listings",
    "escalate_to_manager",
    "prepare_contract",
    "send_technician",
)
PROBLEMS = {
    "the heating is broken": "a broken heating",
    "the neighbours are very noisy": "noisy neighbours",
    "there is water damage in the bathroom": "water damage",
    "my deposit was not returned": "a deposit that was not returned",
    "the window does not close": "a broken window",
}
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


@dataclass(frozen=True, slots=True)
class Dialogue:
    """One synthetic conversation plus the facts the questions about it are graded on."""

    dialogue_id: str
    intent: str
    city: str
    district: str
    rooms: int
    area: int
    budget: int
    amenities: tuple[str, ...]
    problem: str
    fee_disclosed: bool
    next_action: str
    satisfaction: str
    text: str


def _amenity_clause(amenities: tuple[str, ...]) -> str:
    if not amenities:
        return ""
    phrases = [AMENITY_PHRASES[a] for a in amenities]
    return " with " + " and ".join(phrases)


def _make_dialogue(rng: random.Random, dialogue_id: str) -> Dialogue:
    intent = rng.choice(INTENTS)
    city = rng.choice(sorted(CITIES))
    district = rng.choice(CITIES[city])
    rooms = rng.randint(1, 5)
    area = rng.randrange(30, 145, 5)
    amenities = tuple(sorted(rng.sample(AMENITIES, rng.choice((0, 1, 1, 2, 2)))))
    budget = rng.randrange(500, 2550, 50) if intent != "buy" else rng.randrange(100, 910, 10) * 1000
    problem = rng.choice(sorted(PROBLEMS)) if intent == "complaint" else ""
    satisfaction = rng.choice(SATISFACTION)
    fee_disclosed = rng.random() < 0.5
    if intent == "complaint":
        next_action = "escalate_to_manager" if satisfaction == "dissatisfied" else "send_technician"
        if problem == "my deposit was not returned":
            next_action = "escalate_to_manager"
    elif intent == "viewing":
        next_action = "schedule_viewing"
    elif intent == "buy":
        next_action = rng.choice(("prepare_contract", "send_listings", "schedule_viewing"))
    else:
        next_action = rng.choice(("send_listings", "schedule_viewing"))

    amen = _amenity_clause(amenities)
    turns: list[tuple[str, str]] = []
    if intent == "rent":
        turns.append(
            (
                "Customer",
                rng.choice(
                    (
                        f"Hi, I want to rent a {rooms}-room flat in {city}, ideally in {district}.",
                        f"Hello, I am looking for a {rooms}-room apartment to rent in "
                        f"{district}, {city}.",
                    )
                ),
            )
        )
        turns.append(
            (
                "Agent",
                rng.choice(
                    ("Sure. What is your budget?", "Of course. How much can you pay per month?")
                ),
            )
        )
        turns.append(("Customer", f"Up to {budget} euros per month, about {area} m2{amen}."))
    elif intent == "buy":
        turns.append(
            (
                "Customer",
                rng.choice(
                    (
                        f"Hello, we want to buy a {rooms}-room apartment in {city}, in {district}.",
                        f"Hi, I am interested in buying a {rooms}-room flat in {district}, {city}.",
                    )
                ),
            )
        )
        turns.append(
            (
                "Agent",
                rng.choice(
                    ("Great. What is your budget?", "Happy to help. What price range do you have?")
                ),
            )
        )
        turns.append(("Customer", f"At most {budget} euros, around {area} m2{amen}."))
    elif intent == "viewing":
        turns.append(
            (
                "Customer",
                rng.choice(
                    (
                        f"Hi, can I visit the {rooms}-room flat in {district}, {city}?",
                        f"Hello, I would like to see the {rooms}-room apartment in "
                        f"{city}, {district}.",
                    )
                ),
            )
        )
        turns.append(("Agent", "Of course. What budget and size do you need?"))
        turns.append(
            ("Customer", f"I pay up to {budget} euros per month and need {area} m2{amen}.")
        )
    else:
        turns.append(
            (
                "Customer",
                rng.choice(
                    (
                        f"Hello, I rent a flat from you in {district}, {city}, and {problem}.",
                        f"Hi, my apartment is in {city}, {district}. Sadly {problem}.",
                    )
                ),
            )
        )
        turns.append(
            ("Agent", rng.choice(("I am sorry to hear that.", "Thank you for telling us.")))
        )
    fee = ""
    if fee_disclosed:
        fee = rng.choice(
            (
                " Please note our agency fee is two months of rent.",
                " Our service fee is three percent of the price.",
                " The agency fee is stated in the contract.",
            )
        )
    action = {
        "schedule_viewing": f"I can show you the flat on {rng.choice(DAYS)}.",
        "send_listings": rng.choice(
            ("I will email you some listings today.", "I will send you matching offers.")
        ),
        "escalate_to_manager": rng.choice(
            ("I will forward this to my manager.", "My manager will call you back.")
        ),
        "prepare_contract": rng.choice(
            ("I will prepare the contract.", "I will draft the purchase agreement.")
        ),
        "send_technician": f"A technician will come on {rng.choice(DAYS)}.",
    }[next_action]
    turns.append(("Agent", action + fee))
    turns.append(
        (
            "Customer",
            rng.choice(
                {
                    "satisfied": (
                        "Great, thank you so much!",
                        "Perfect, that helps a lot.",
                        "Wonderful, thanks.",
                    ),
                    "neutral": ("Okay.", "Fine, I will wait.", "Alright, noted."),
                    "dissatisfied": (
                        "This is really disappointing.",
                        "That is not acceptable.",
                        "I am not happy with this service.",
                    ),
                }[satisfaction]
            ),
        )
    )
    text = "\n".join(f"{who}: {line}" for who, line in turns)
    return Dialogue(
        dialogue_id,
        intent,
        city,
        district,
        rooms,
        area,
        budget,
        amenities,
        problem,
        fee_disclosed,
        next_action,
        satisfaction,
        text,
    )


def make_dialogues(
    n: int, seed: int, prefix: str, exclude: frozenset[str] = frozenset()
) -> list[Dialogue]:
    """``n`` distinct dialogues from ``seed``; texts in ``exclude`` are skipped (no overlap)."""
    rng = random.Random(seed)
    seen = set(exclude)
    out: list[Dialogue] = []
    while len(out) < n:
        dialogue = _make_dialogue(rng, f"{prefix}-{len(out) + 1:04d}")
        if dialogue.text in seen:
            continue
        seen.add(dialogue.text)
        out.append(dialogue)
    return out


def _summary(d: Dialogue) -> str:
    if d.intent == "complaint":
        return f"The customer complains about {PROBLEMS[d.problem]} in {d.city}."
    verb = {"rent": "rent", "buy": "buy", "viewing": "view"}[d.intent]
    return f"The customer wants to {verb} a {d.rooms}-room flat in {d.city}."


def _questions(d: Dialogue) -> list[dict[str, Any]]:
    """Every question that applies to ``d``: task_type, output_format, question, reference."""
    qs: list[dict[str, Any]] = [
        {
            "task_type": "intent_classification",
            "output_format": "label",
            "question": "What does the customer want? Answer with one of: rent, buy, viewing, "
            "complaint.",
            "reference": d.intent,
            "labels": list(INTENTS),
        },
        {
            "task_type": "satisfaction",
            "output_format": "label",
            "question": "How satisfied is the customer at the end? Answer with one of: "
            "satisfied, neutral, dissatisfied.",
            "reference": d.satisfaction,
            "labels": list(SATISFACTION),
        },
        {
            "task_type": "compliance",
            "output_format": "yes_no",
            "question": "Did the agent disclose the agency fee? Answer yes or no.",
            "reference": "yes" if d.fee_disclosed else "no",
        },
        {
            "task_type": "next_action",
            "output_format": "label",
            "question": "What will the agent do next? Answer with one of: "
            + ", ".join(NEXT_ACTIONS)
            + ".",
            "reference": d.next_action,
            "labels": list(NEXT_ACTIONS),
        },
        {
            "task_type": "summary",
            "output_format": "free_text",
            "question": "Summarize the dialogue in one sentence.",
            "reference": _summary(d),
        },
        {
            "task_type": "district",
            "output_format": "span",
            "question": "Which district is the flat in?",
            "reference": d.district,
        },
    ]
    if d.intent != "complaint":
        qs += [
            {
                "task_type": "entity_extraction",
                "output_format": "json",
                "question": "Extract city, rooms and budget as JSON.",
                "reference": {"city": d.city, "rooms": d.rooms, "budget": d.budget},
            },
            {
                "task_type": "area",
                "output_format": "number",
                "question": "How many m2 does the customer need? Answer with a number.",
                "reference": d.area,
            },
        ]
        if d.amenities:
            qs.append(
                {
                    "task_type": "amenities",
                    "output_format": "list",
                    "question": "Which amenities does the customer ask for? Answer as a "
                    "comma-separated list.",
                    "reference": list(d.amenities),
                }
            )
    return qs


def _render_response(output_format: str, reference: Any) -> str:
    """The training target text for a reference (what a perfect model would answer)."""
    if output_format == "json":
        return json.dumps(reference, separators=(", ", ": "))
    if output_format == "list":
        return ", ".join(reference)
    return str(reference)


def _item_input(d: Dialogue, question: str, use_messages: bool) -> dict[str, Any]:
    if use_messages:
        return {
            "messages": [
                {"role": "system", "content": DOMAIN_SYSTEM_PROMPT},
                {"role": "user", "content": f"{d.text}\n\nQuestion: {question}"},
            ]
        }
    return {"prompt": f"{d.text}\n\nQuestion: {question}\nAnswer:"}


def domain_items(
    dialogues: list[Dialogue],
    seed: int,
    per_dialogue: int | None,
    id_prefix: str,
    *,
    training: bool,
) -> list[dict[str, Any]]:
    """Items (test format) or samples (training format) for ``dialogues``.

    ``per_dialogue`` questions are drawn per dialogue (all when None); about 40 % of the
    items use ``messages`` and, in the test format, a third of the label items carry
    ``choices`` so that log-likelihood ranking is exercised.
    """
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for d in dialogues:
        qs = _questions(d)
        if per_dialogue is not None and per_dialogue < len(qs):
            qs = [qs[i] for i in sorted(rng.sample(range(len(qs)), per_dialogue))]
        for q in qs:
            item: dict[str, Any] = {
                "id": f"{id_prefix}-{len(out) + 1:04d}",
                "task_type": q["task_type"],
                "output_format": q["output_format"],
            }
            item.update(_item_input(d, q["question"], rng.random() < 0.4))
            if training:
                item["response"] = _render_response(q["output_format"], q["reference"])
            else:
                item["reference"] = q["reference"]
                if "labels" in q and rng.random() < 0.33:
                    item["choices"] = q["labels"]
                item["metadata"] = {"cluster": d.dialogue_id}
            out.append(item)
    return out


def domain_test_set() -> list[dict[str, Any]]:
    """The shipped domain test set (``tasks/demo/realestate_test.jsonl``)."""
    return domain_items(
        make_dialogues(90, TEST_SEED, "dlg-test"), TEST_SEED, 6, "re", training=False
    )


@functools.cache
def _unleaked_dialogues(n: int, seed: int, prefix: str) -> tuple[Dialogue, ...]:
    """The first ``n`` dialogues of ``seed``'s stream that are neither a test dialogue nor
    near-identical to one (word 3-gram Jaccard >= 0.7, the contamination check's context
    threshold, with its own code): the templates can tell one scene twice in words that
    differ by a name or a phrase, and such a pair in training and test is a leak that
    ``collapse-eval quality --against`` reports. Dropped dialogues keep their ids' gaps."""
    from collapse_eval.quality.contamination import near_identical_to

    test = [d.text for d in make_dialogues(90, TEST_SEED, "dlg-test")]
    drawn = n
    while True:  # each draw extends the last (one seeded stream), so this ends
        candidates = make_dialogues(drawn, seed, prefix, exclude=frozenset(test))
        leaked = near_identical_to([d.text for d in candidates], test)
        kept = [d for i, d in enumerate(candidates) if i not in leaked]
        if len(kept) >= n:
            return tuple(kept[:n])
        drawn += n - len(kept)


def domain_train_set() -> list[dict[str, Any]]:
    """The training split: 320 dialogues, none equal or near-identical to a test
    dialogue, six questions each."""
    dialogues = list(_unleaked_dialogues(320, TRAIN_SEED, "dlg-train"))
    return domain_items(dialogues, TRAIN_SEED, 6, "re-train", training=True)


def unlabelled_dialogue_texts(n: int) -> list[str]:
    """Raw dialogue text for the base model's pre-training mix (no test dialogue, nor one
    near-identical to it: the base reads these)."""
    return [d.text for d in _unleaked_dialogues(n, UNLABELLED_SEED, "dlg-raw")]


# ------------------------------------------------------------------ general tasks

GENERAL_TASKS = ("demo_arithmetic", "demo_capitals", "demo_copy", "demo_sort")

CAPITALS: dict[str, str] = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Portugal": "Lisbon",
    "Austria": "Vienna",
    "Poland": "Warsaw",
    "Greece": "Athens",
    "Sweden": "Stockholm",
    "Norway": "Oslo",
    "Finland": "Helsinki",
    "Denmark": "Copenhagen",
    "Ireland": "Dublin",
    "Belgium": "Brussels",
    "Netherlands": "Amsterdam",
    "Hungary": "Budapest",
    "Czechia": "Prague",
    "Romania": "Bucharest",
    "Bulgaria": "Sofia",
    "Croatia": "Zagreb",
    "Serbia": "Belgrade",
    "Ukraine": "Kyiv",
    "Russia": "Moscow",
    "Turkey": "Ankara",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "Nigeria": "Abuja",
    "Ghana": "Accra",
    "Morocco": "Rabat",
    "Ethiopia": "Addis Ababa",
    "Japan": "Tokyo",
    "China": "Beijing",
    "India": "New Delhi",
    "Thailand": "Bangkok",
    "Vietnam": "Hanoi",
    "Indonesia": "Jakarta",
    "Iran": "Tehran",
    "Iraq": "Baghdad",
    "Israel": "Jerusalem",
    "Canada": "Ottawa",
    "Mexico": "Mexico City",
    "Brazil": "Brasilia",
    "Argentina": "Buenos Aires",
    "Chile": "Santiago",
    "Peru": "Lima",
    "Colombia": "Bogota",
    "Cuba": "Havana",
    "Australia": "Canberra",
    "Iceland": "Reykjavik",
    "Latvia": "Riga",
}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"

# The general tasks are sized so that the ~1.5M-parameter base model learns each of them
# to well above 40 % in its short CPU training budget (a base that already fails its
# general tasks cannot show a collapse), while their item spaces stay large enough for
# ~500 distinct test items plus disjoint training items.


def _arithmetic(rng: random.Random) -> tuple[str, str, str]:
    # Two-digit sums without carries: every answer digit is the sum of two digits at a
    # fixed position (a 55-fact table), learnable by a tiny model; 1980 distinct items.
    ta = rng.randint(1, 8)
    tb = rng.randint(1, 9 - ta)
    ua = rng.randint(0, 9)
    ub = rng.randint(0, 9 - ua)
    a, b = 10 * ta + ua, 10 * tb + ub
    return f"{a}+{b}", f"Q: What is {a} + {b}?\nA:", str(a + b)


def _copy(rng: random.Random) -> tuple[str, str, str]:
    seq = " ".join(rng.choice(_LETTERS) for _ in range(3))
    return seq, f"Q: Copy the letters: {seq}\nA:", seq


def _sort(rng: random.Random) -> tuple[str, str, str]:
    digits = [rng.randint(0, 9) for _ in range(3)]
    seq = " ".join(map(str, digits))
    return seq, f"Q: Sort the digits: {seq}\nA:", " ".join(map(str, sorted(digits)))


def _capital_question(country: str) -> str:
    return f"Q: What is the capital of {country}?\nA:"


_GENERATORS = {"demo_arithmetic": _arithmetic, "demo_copy": _copy, "demo_sort": _sort}
# ~500 items where the item space allows (sort has 1000 digit triples: half for testing);
# capitals asks each of the 50 facts four times with different distractors.
GENERAL_TEST_SIZE = {
    "demo_arithmetic": 500,
    "demo_copy": 500,
    "demo_sort": 500,
    "demo_capitals": 200,
}


def _general_test_keys(task: str) -> list[tuple[str, str, str]]:
    rng = random.Random(f"{GENERAL_SEED}-{task}-test")
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    gen = _GENERATORS[task]
    while len(out) < GENERAL_TEST_SIZE[task]:
        key, prompt, answer = gen(rng)
        if key not in seen:
            seen.add(key)
            out.append((key, prompt, answer))
    return out


def general_test_docs(task: str) -> list[dict[str, Any]]:
    """lm-eval documents for ``task`` (``question``/``answer``, or MC ``choices``/``label``)."""
    if task == "demo_capitals":
        rng = random.Random(f"{GENERAL_SEED}-{task}-test")
        countries = sorted(CAPITALS)
        docs: list[dict[str, Any]] = []
        for i in range(GENERAL_TEST_SIZE[task]):
            country = countries[i % len(countries)]
            wrong = rng.sample(sorted(set(CAPITALS.values()) - {CAPITALS[country]}), 3)
            choices = wrong + [CAPITALS[country]]
            rng.shuffle(choices)
            docs.append(
                {
                    "id": i,
                    "question": _capital_question(country),
                    "choices": choices,
                    "label": choices.index(CAPITALS[country]),
                }
            )
        return docs
    return [
        {"id": i, "question": prompt, "answer": answer}
        for i, (_, prompt, answer) in enumerate(_general_test_keys(task))
    ]


def general_train_pairs(
    n_per_task: int, seed: int = GENERAL_SEED
) -> dict[str, list[tuple[str, str]]]:
    """(prompt, answer) training pairs per general task, never a test item.

    Capitals are knowledge: the facts themselves are the training data (the test asks
    them as multiple choice), so that task cycles through the fact list.
    """
    out: dict[str, list[tuple[str, str]]] = {}
    for task, gen in _GENERATORS.items():
        test_keys = {k for k, _, _ in _general_test_keys(task)}
        rng = random.Random(f"{seed}-{task}-train")
        pairs: list[tuple[str, str]] = []
        while len(pairs) < n_per_task:
            key, prompt, answer = gen(rng)
            if key not in test_keys:
                pairs.append((prompt, answer))
        out[task] = pairs
    countries = sorted(CAPITALS)
    out["demo_capitals"] = [
        (_capital_question(c), CAPITALS[c])
        for c in (countries[i % len(countries)] for i in range(n_per_task))
    ]
    return out


# ------------------------------------------------------------------ files


def _jsonl_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as JSON Lines with ``\\n`` line ends (bit-identical on every OS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(_jsonl_lines(rows))


def write_all(tasks_dir: Path = TASKS_DIR) -> list[Path]:
    """(Re)generate every committed demo data file under ``tasks_dir``; returns the paths."""
    written = []
    for name, rows in (
        ("realestate_test.jsonl", domain_test_set()),
        ("realestate_train.jsonl", domain_train_set()),
    ):
        path = tasks_dir / "demo" / name
        write_jsonl(path, rows)
        written.append(path)
    for task in GENERAL_TASKS:
        path = tasks_dir / "demo_general" / f"{task}.jsonl"
        write_jsonl(path, general_test_docs(task))
        written.append(path)
    return written
