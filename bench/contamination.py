"""Speed of the train/test contamination check (`quality TRAIN --against TEST`).

Synthetic data of the study's shape: DIALOGUES dialogues of WORDS words (made-up words,
so distinct dialogues share no 3-gram by chance), QUESTIONS questions on each; a tenth of
the dialogues are held out for the test set, and PLANTED of those are training dialogues
with one word changed (the check must find exactly their items). Prints wall and CPU
seconds of `find_contamination`.

    python bench/contamination.py [DIALOGUES] [WORDS]     # default 2000 200
"""

from __future__ import annotations

import random
import sys
import time

from collapse_eval.domain.dataset import DomainItem, TrainingItem
from collapse_eval.quality.contamination import find_contamination

QUESTIONS = 5
PLANTED = 20


def main(n_dialogues: int = 2000, words: int = 200) -> None:
    rng = random.Random(0)
    vocab = [
        "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
        for _ in range(20000)
    ]
    texts = [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n_dialogues)]
    questions = [f"Question {q}: what does the customer want, in a word?" for q in range(QUESTIONS)]
    n_test = n_dialogues // 10
    train_texts, test_texts = texts[n_test:], texts[:n_test]
    for k in range(PLANTED):  # a training dialogue with one word changed
        tokens = train_texts[k].split()
        tokens[words // 2] = "changed"
        test_texts[k] = " ".join(tokens)
    train = [
        TrainingItem(
            id=f"tr-{d}-{q}",
            response="x",
            messages=(("user", f"{text}\n\n{question}"),),
            task_type=f"task{q}",
            metadata={"dialogue_id": f"d{d}"},
        )
        for d, text in enumerate(train_texts)
        for q, question in enumerate(questions)
    ]
    test = [
        DomainItem(
            id=f"te-{d}-{q}",
            task_type=f"task{q}",
            output_format="free_text",
            reference="x",
            messages=(("user", f"{text}\n\n{question}"),),
            metadata={"cluster": f"t{d}"},
        )
        for d, text in enumerate(test_texts)
        for q, question in enumerate(questions)
    ]
    wall, cpu = time.perf_counter(), time.process_time()
    result = find_contamination(train, test)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{len(train)} training samples x {len(test)} test items, {words}-word dialogues: "
        f"{result.n_contaminated} contaminated (planted {PLANTED * QUESTIONS}), "
        f"{wall:.1f} s wall, {cpu:.1f} s CPU"
    )
    assert result.n_contaminated == PLANTED * QUESTIONS


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
