"""The champion/challenger rule as a pure function: scores and margin in, decision and reason out."""

from __future__ import annotations

import pytest

from price_alchemy.training.promotion import PromotionDecision, promotion_rule

pytestmark = pytest.mark.unit


def _rule(
    challenger: float, champion: float | None, *, margin: float = 0.01, **kw: object
) -> tuple[bool, str]:
    options = {"version": "7", "champion_version": "3", "champion_rmsle": champion, **kw}
    return promotion_rule(challenger, margin, **options)  # type: ignore[arg-type]


def test_no_champion_means_promotion() -> None:
    assert _rule(0.9, None, champion_version=None) == (True, "no champion existed")


def test_the_version_already_champion_stays_promoted() -> None:
    assert _rule(0.5, None, champion_version="7") == (True, "already champion")


@pytest.mark.parametrize(
    ("challenger", "champion", "promoted"),
    [
        (0.489, 0.500, True),  # better by more than the margin
        (0.490, 0.500, True),  # better by exactly the margin
        (0.491, 0.500, False),  # better, but by less than the margin
        (0.500, 0.500, False),  # a tie
        (0.520, 0.500, False),  # worse
    ],
)
def test_the_challenger_must_beat_the_champion_by_the_margin(
    challenger: float, champion: float, promoted: bool
) -> None:
    decided, reason = _rule(challenger, champion, margin=0.01)
    assert decided is promoted
    verdict = "beats" if promoted else "does not beat"
    assert (
        reason == f"challenger RMSLE {challenger:.4f} {verdict} champion v3 {champion:.4f} by the margin 0.01"
    )


def test_a_negative_margin_lets_a_slightly_worse_challenger_through() -> None:
    assert _rule(0.505, 0.500, margin=-0.01)[0] is True


def test_a_champion_that_could_not_be_scored_is_kept() -> None:
    promoted, reason = _rule(0.1, None, champion_error="OSError: artifact missing")
    assert promoted is False
    assert reason == "champion v3 could not be scored (OSError: artifact missing); not promoted"


def test_decision_tags_and_description() -> None:
    decision = PromotionDecision("m", "7", False, "why not", 0.5, "3", None, 0.01)
    tags = decision.as_tags()
    assert tags["promotion.promoted"] == "False"
    assert tags["promotion.champion_rmsle"] == ""  # None is written as an empty tag
    assert tags["promotion.champion_version"] == "3"
    assert set(tags) == {f"promotion.{k}" for k in PromotionDecision.__dataclass_fields__}
    assert decision.description == "Not promoted: why not"
    assert (
        PromotionDecision("m", "7", True, "ok", 0.5, None, None, 0.0).description
        == "PROMOTED to champion: ok"
    )


def test_a_champion_refused_as_unsafe_is_replaced() -> None:
    promoted, reason = _rule(
        0.9, None, champion_error="serialization format 'pickle' refused", champion_refused=True
    )
    assert promoted is True
    assert (
        reason
        == "champion v3 was refused as unsafe to load (serialization format 'pickle' refused); replaced"
    )
