"""`collapse-eval plan`: the planned fixed-n power against simulations of stats.py's
tests, the sequential design's expected items against its simulation, and the command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from collapse_eval import planning as pl
from collapse_eval import sequential as sq
from collapse_eval.cli import main
from collapse_eval.stats import newcombe_paired_ci
from tests import seqsim
from tests.conftest import synthetic_rows, write_run

ALPHA = 0.05


@pytest.mark.parametrize(
    ("accuracy", "discordance", "margin", "n"),
    [
        (0.6, 0.15, 0.03, None),
        (0.6, 0.15, 0.03, 500),
        (0.3, 0.08, 0.02, None),
        (0.8, 0.2, 0.05, 300),
    ],
)
def test_planned_power_matches_the_simulated_fixed_n_test(
    accuracy: float, discordance: float, margin: float, n: int | None
) -> None:
    variance = pl.binary_variance(discordance)
    n = n or pl.fixed_n_items(variance, margin, alpha=ALPHA, power=0.8)
    planned = pl.fixed_n_power(variance, margin, n, alpha=ALPHA)
    # stats.py's fixed-n rule: non-inferior when Newcombe's CI is above -margin.
    rng = np.random.default_rng(21)
    half = discordance / 2
    cells = [accuracy - half, half, half, 1 - accuracy - half]
    tables = rng.multinomial(n, cells, size=20_000)
    low, _ = newcombe_paired_ci(tables[:, 0], tables[:, 1], tables[:, 2], tables[:, 3], ALPHA)
    assert abs(planned - float((low > -margin).mean())) <= 0.03


def test_items_needed_give_the_wanted_power() -> None:
    v = pl.binary_variance(0.15)
    n = pl.fixed_n_items(v, 0.03, alpha=ALPHA, power=0.8)
    assert n == 1309  # (1.96 + 0.8416)^2 * 0.15 / 0.03^2 = 1308.1
    assert pl.fixed_n_power(v, 0.03, n, alpha=ALPHA) == pytest.approx(0.8, abs=1e-3)


def test_expected_items_match_the_simulated_design() -> None:
    rng = np.random.default_rng(22)
    n_max, margin, disc, k = 800, 0.03, 0.15, 5
    t = [(j + 1) / k for j in range(k)]
    sizes = np.array(seqsim.looks(n_max, k))
    for _, scale in pl.SCENARIOS:
        planned = pl.expected_items(
            pl.binary_variance(disc), margin, n_max, scale * margin, alpha=ALPHA, looks=k
        )
        delta, se = seqsim.binary(rng, 3000, n_max, k, scale * margin, disc)
        g = [sq.Gating("t", "task", margin)]
        dof = seqsim.dof(n_max, k)
        sim = sq.simulate_design(g, delta[None], se[None], t, alpha=ALPHA, dof=dof)
        assert abs(planned - float(sizes[sim.stop - 1].mean())) <= 0.03 * n_max


def test_design_effect_of_clustered_scores() -> None:
    rng = np.random.default_rng(23)
    effect = rng.normal(0, 1, size=(400, 1))  # a cluster effect shared by its 5 items
    scores = (effect + rng.normal(0, 1, size=(400, 5)) > 0).astype(float).ravel()
    clusters = [f"c{i // 5}" for i in range(2000)]
    deff = pl.design_effect(scores, clusters)
    # ICC of the 0/1 scores is about 1/3 here: 1 + (5 - 1) * ICC, about 2.3.
    assert 1.9 < deff < 2.7
    assert pl.design_effect(scores, None) == 1.0


def test_plan_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_run(tmp_path / "base", "b", synthetic_rows(1, 0.7, 0.5, n=400))
    assert main(["plan", str(base), "--discordance", "0.1", "--items", "arc_easy=3000"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if "arc_easy" in row)
    cells = [c.strip() for c in line.strip("│ ").split("│")]
    need = pl.fixed_n_items(pl.binary_variance(0.1), 0.02, alpha=ALPHA, power=0.8)
    assert need == 1963  # (1.96 + 0.8416)^2 * 0.1 / 0.02^2
    # 3000 items: Phi(0.02 sqrt(3000 / 0.1) - 1.96) = Phi(1.50) = 93 %.
    assert cells[4:7] == ["1,963", "3,000", "93%"] and cells[-1] == "yes"
    assert main(["plan", "--prior", "gsm8k=0.3", "--items", "gsm8k=1319"]) == 0
    assert "gsm8k" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prior", "realestat=0.5"], "not a task of"),
        (["--prior", "arc_easy=1.5"], "expected TASK=ACCURACY, in [0, 1]"),
        (["--items", "arc_easy=ten"], "expected TASK=N, a whole number of items >= 1"),
        (["--power", "1.2"], "Invalid value for '--power'"),
        (["--discordence", "0.1"], "Did you mean '--discordance'?"),
    ],
)
def test_plan_mistakes_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    base = write_run(tmp_path / "base", "b", synthetic_rows(1, 0.7, 0.5, n=50))
    assert main(["plan", str(base), *argv]) == 2
    assert message in capsys.readouterr().err


def test_plan_without_a_run_needs_priors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan"]) == 2
    assert "plan needs a base run directory" in capsys.readouterr().err
    assert main(["plan", "--prior", "a=0.5", "--items", "b=100"]) == 2
    assert "--items b: give its accuracy too" in capsys.readouterr().err
