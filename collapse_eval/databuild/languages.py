"""The languages ``data build`` can construct and screen prompts in.

A spec's ``languages`` names them (English: ``English`` or ``en``; Chinese: ``Chinese``,
``zh`` or ``中文``; case does not matter). Each language says how its format statements
are worded and how lengths are counted: words for English, characters for Chinese (a
Chinese word is about two characters, so a limit given in words counts double). A
language without these rules is refused when the spec loads: screening Chinese with
English rules would reject every good prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from collapse_eval.domain.scorers import script_counts

__all__ = [
    "CHINESE",
    "ENGLISH",
    "LANGUAGES",
    "Language",
    "by_name",
    "detect_language",
    "resolve_language",
    "supported_names",
]


@dataclass(frozen=True)
class Language:
    name: str
    aliases: tuple[str, ...]
    unit: str  # what a length counts: "words" or "characters"
    min_length: int  # in units
    per_word: int  # units per word of a limit given in words (max_added_words, ...)
    statements: Mapping[str, str]  # output format -> how an answer of it is described
    list_separator: str  # between the labels or keys of a statement
    choices: str  # prefix of the label set
    json_keys: str  # prefix of the JSON keys

    def format_statement(self, output_format: str, names: tuple[str, ...] = ()) -> str:
        """How an answer of ``output_format`` looks; ``names``: the labels or JSON keys."""
        if output_format == "label":
            return self.choices + self.list_separator.join(names)
        if output_format == "json":
            return self.json_keys + self.list_separator.join(names)
        return self.statements[output_format]


ENGLISH = Language(
    name="English",
    aliases=("english", "en"),
    unit="words",
    min_length=4,
    per_word=1,
    statements={
        "yes_no": "yes or no",
        "number": "a number",
        "list": "a comma-separated list",
        "span": "a short phrase copied from the dialogue",
        "free_text": "one or two sentences of free text",
    },
    list_separator=", ",
    choices="exactly one of: ",
    json_keys="a JSON object with the keys ",
)

CHINESE = Language(
    name="Chinese",
    aliases=("chinese", "zh", "中文"),
    unit="characters",
    min_length=6,
    per_word=2,
    statements={
        "yes_no": "是或否",
        "number": "一个数字",
        "list": "一个用顿号或逗号分隔的列表",
        "span": "从对话中原样摘取的一个短语",
        "free_text": "一两句话的自由文本",
    },
    list_separator="、",
    choices="只能是以下之一：",
    json_keys="一个JSON对象，包含键：",
)

LANGUAGES = (ENGLISH, CHINESE)


def supported_names() -> str:
    """'English (en), Chinese (zh, 中文)': what an error message offers."""
    return ", ".join(
        f"{lang.name} ({', '.join(a for a in lang.aliases if a != lang.name.lower())})"
        for lang in LANGUAGES
    )


def resolve_language(name: str) -> Language | None:
    """The language a spec names (any alias, any case), or None."""
    key = name.strip().casefold()
    return next((lang for lang in LANGUAGES if key in lang.aliases), None)


def by_name(name: str) -> Language:
    """A canonical name (as BuildSpec.languages holds it) -> its Language."""
    return next(lang for lang in LANGUAGES if lang.name == name)


def detect_language(text: str) -> Language:
    """Chinese when CJK characters are at least as many as the other words (an instruction
    in Chinese often names English JSON keys or labels), else English."""
    cjk, other = script_counts(text)
    return CHINESE if cjk and cjk >= other else ENGLISH
