from __future__ import annotations

from pathlib import Path

import pytest

from collapse_eval.errors import ConfigError
from collapse_eval.policy import default_policy, load_policy


def test_defaults_and_full_file(tmp_path: Path) -> None:
    assert load_policy(None) == default_policy()
    p = default_policy()
    assert (p.alpha, p.general.margin, p.general.fail_on) == (0.05, 0.02, ("regressed",))
    assert p.domain.require_gain and p.domain.margin == 0.02 and p.domain.fail_on == ()
    f = tmp_path / "policy.yaml"
    f.write_text(
        "alpha: 0.01\n"
        "general: {margin: 0.03, fail_on: [regressed, inconclusive], critical: [mmlu],"
        " margins: {gsm8k: 0.05}}\n"
        "domain: {require_gain: false, min_gain: 0.01, margin: 0.04,"
        " fail_on: [regressed]}\n"
    )
    pol = load_policy(f)
    assert pol.alpha == 0.01 and pol.general.critical == ("mmlu",)
    assert pol.general.fail_on == ("regressed", "inconclusive")
    assert pol.domain.fail_on == ("regressed",) and not pol.domain.require_gain
    # Margin precedence: policy margins[task] > benchmarks.yaml margin > policy margin.
    assert pol.general_margin_source("gsm8k", 0.01).value == 0.05
    assert pol.general_margin_source("arc_easy", 0.01).value == 0.01
    assert pol.general_margin_source("arc_easy", None).value == 0.03
    assert pol.to_json()["general"]["margins"] == {"gsm8k": 0.05}


def test_unknown_key_has_line_and_hint(tmp_path: Path) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text("alpha: 0.05\ngeneral:\n  margn: 0.02\n")
    with pytest.raises(ConfigError) as err:
        load_policy(f)
    text = str(err.value)
    assert f"{f}:3" in text and "'margn'" in text and "Did you mean 'margin'?" in text
    assert err.value.exit_code == 2
    f.write_text("alpah: 0.05\n")
    with pytest.raises(ConfigError, match="Did you mean 'alpha'"):
        load_policy(f)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("alpha: 0\n", "alpha"),
        ("alpha: yes\n", "must be a number"),
        ("general: {margin: -0.1}\n", "general.margin"),
        ("general: {fail_on: [regresed]}\n", "Did you mean 'regressed'"),
        ("general: {fail_on: regressed}\n", "must be a list"),
        ("domain: {require_gain: 1}\n", "true or false"),
        ("general: {margins: {gsm8k: big}}\n", "general.margins.gsm8k"),
        ("- a\n", "must be a mapping"),
        ("alpha: [\n", "invalid YAML"),
    ],
)
def test_bad_values(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        load_policy(f)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_policy(tmp_path / "nope.yaml")
