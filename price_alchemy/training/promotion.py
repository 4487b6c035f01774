"""The champion/challenger rule, as a pure function of the scores (no MLflow here).

Every trained model becomes ``challenger``; it becomes ``champion`` only when no champion exists,
or when its test RMSLE is lower than the champion's on the same test rows by at least ``margin``.
A champion that could not be scored is not beaten by default (a registry outage must not crown a
worse model), except when it was *refused* as unsafe to load: such a model can never be served,
so any challenger replaces it. The stages module gathers the
scores and :mod:`price_alchemy.mlflow_store` records the decision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PromotionDecision:
    model_name: str
    version: str
    promoted: bool
    reason: str
    challenger_rmsle: float
    champion_version: str | None
    champion_rmsle: float | None
    margin: float

    def as_tags(self) -> dict[str, str]:
        return {f"promotion.{k}": "" if v is None else str(v) for k, v in asdict(self).items()}

    @property
    def description(self) -> str:
        """The registry description of the version: the verdict first, then the reason."""
        return ("PROMOTED to champion: " if self.promoted else "Not promoted: ") + self.reason


def promotion_rule(
    challenger_rmsle: float,
    margin: float,
    *,
    version: str,
    champion_version: str | None,
    champion_rmsle: float | None,
    champion_error: str | None = None,
    champion_refused: bool = False,
) -> tuple[bool, str]:
    """Whether the challenger becomes champion, and why (one sentence).

    ``champion_rmsle`` is the champion's score on the challenger's test rows, None when there is no
    champion or it could not be scored (``champion_error`` then says why, ``champion_refused`` whether it was
    refused as unsafe to load).
    """
    if champion_version is None:
        return True, "no champion existed"
    if champion_version == version:
        return True, "already champion"
    if champion_rmsle is None and champion_refused:
        return (
            True,
            f"champion v{champion_version} was refused as unsafe to load ({champion_error}); replaced",
        )
    if champion_rmsle is None:
        detail = champion_error or "no score"
        return False, f"champion v{champion_version} could not be scored ({detail}); not promoted"
    promoted = challenger_rmsle <= champion_rmsle - margin
    verdict = "beats" if promoted else "does not beat"
    return promoted, (
        f"challenger RMSLE {challenger_rmsle:.4f} {verdict} champion v{champion_version} "
        f"{champion_rmsle:.4f} by the margin {margin:g}"
    )
