"""Model registry: every trained model becomes ``challenger``; ``champion`` only when it wins.

The challenger and the current champion are scored on the same test rows. The challenger is
promoted when no champion exists or when its RMSLE is lower by at least ``margin``. Either way
the decision, the reason and both scores are written as tags on the new version, and logged.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from price_alchemy.errors import ModelNotFoundError
from price_alchemy.schema import FEATURE_COLUMNS, PRICE
from price_alchemy.training.evaluate import rmsle

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


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


def champion_version(client: MlflowClient, model_name: str) -> str | None:
    """The version currently aliased ``champion``, or None when there is none."""
    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        return None


def resolve_model_uri(model_name: str, alias: str = CHAMPION) -> str:
    """``models:/name@alias`` after checking that the alias exists (clear error otherwise)."""
    client = MlflowClient()
    try:
        client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"no version of registered model {model_name!r} has alias {alias!r}; run `price-alchemy train` first"
        ) from exc
    return f"models:/{model_name}@{alias}"


def decide_promotion(
    client: MlflowClient,
    model_name: str,
    version: str,
    challenger_rmsle: float,
    test: pd.DataFrame,
    margin: float,
) -> PromotionDecision:
    """Alias the new version ``challenger``, compare with the champion on ``test`` and maybe promote."""
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    current = champion_version(client, model_name)
    champion_score: float | None = None
    if current is None:
        promoted, reason = True, "no champion existed"
    elif current == version:
        promoted, reason = True, "already champion"
    else:
        try:
            champion = mlflow.sklearn.load_model(f"models:/{model_name}/{current}")
            champion_score = rmsle(test[PRICE].to_numpy(), champion.predict(test[list(FEATURE_COLUMNS)]))
        except Exception as exc:  # a champion we cannot score is not beaten by default: keep it, say why
            promoted = False
            reason = f"champion v{current} could not be scored ({type(exc).__name__}: {exc}); not promoted"
        else:
            promoted = challenger_rmsle <= champion_score - margin
            verdict = "beats" if promoted else "does not beat"
            reason = (
                f"challenger RMSLE {challenger_rmsle:.4f} {verdict} champion v{current} "
                f"{champion_score:.4f} by the margin {margin:g}"
            )
    decision = PromotionDecision(
        model_name, version, promoted, reason, challenger_rmsle, current, champion_score, margin
    )
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(model_name, version, key, value)
    client.update_model_version(
        model_name, version, description=("PROMOTED to champion: " if promoted else "Not promoted: ") + reason
    )
    log.info("model %s v%s %s: %s", model_name, version, "promoted" if promoted else "not promoted", reason)
    return decision
