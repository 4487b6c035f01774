"""The packaged word-piece vectors: read as plain numbers, split as the encoder splits, and meaningful."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml

from price_alchemy import model_files
from price_alchemy.data.synthetic import generate_listings
from price_alchemy.errors import ModelRefusedError
from price_alchemy.estimators import TRUSTED_TYPES
from price_alchemy.features import MEANING_BLOCKS, build_featurizer, build_pipeline
from price_alchemy.params import FeatureParams
from price_alchemy.schema import FEATURE_COLUMNS
from price_alchemy.training.families import make_estimator
from price_alchemy.word_vectors import DIMS, MAX_PIECES, MAX_WORDS, WordVectors, table, word_pieces

pytestmark = pytest.mark.unit

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "wordpiece_cases.json"


def _vector(text: str) -> np.ndarray:
    fitted = WordVectors().fit(pd.DataFrame({"t": [text]}))
    fitted.idf_[:] = 1.0  # plain means: compare meanings, not the one text's IDF
    return fitted.transform(pd.DataFrame({"t": [text]})).toarray()[0]


def test_the_table_is_plain_numbers_with_its_provenance() -> None:
    packaged = table()
    assert packaged.vectors.shape == (len(packaged.ids), DIMS) == (30522, DIMS)
    assert packaged.vectors.dtype == np.float32
    assert packaged.source["licence"] == "Apache-2.0"
    assert packaged.source["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    # Special tokens never come out of a word: their rows are zero, word rows are not.
    assert not packaged.vectors[packaged.ids["[UNK]"]].any()
    assert not packaged.vectors[packaged.ids["[CLS]"]].any()
    assert (np.abs(packaged.vectors[packaged.ids["phone"]]) > 0).sum() > DIMS // 2
    assert len(packaged.digest) == 64


def test_words_split_into_the_pieces_the_encoders_tokenizer_gives() -> None:
    """Cases written by the encoder's own BertTokenizer (punctuation tokens left out: the
    featurizer's words never hold punctuation): accents, CJK, over-long words, digits, brands.
    Its [UNK] (a zero row here) is no piece."""
    cases = json.loads(CASES.read_text(encoding="utf-8"))["pieces"]
    packaged = table()
    ids = packaged.ids
    assert len(cases) > 400
    expected = {w: tuple(ids[t] for t in p if t != "[UNK]") for w, p in cases.items()}
    wrong = {w: p for w, p in expected.items() if word_pieces(w, packaged) != p}
    assert not wrong


def test_a_word_with_no_vocabulary_split_has_no_pieces() -> None:
    packaged = table()
    ids = packaged.ids
    assert word_pieces("iphone", packaged) == (ids["iphone"],)
    assert word_pieces("Café", packaged) == (ids["cafe"],)
    # The encoder's limit: a word of 100 characters is split, one of 101 is unknown.
    assert len(word_pieces("ab" * 50, packaged)) > 0
    assert word_pieces("ab" * 50 + "a", packaged) == ()
    # A character outside the vocabulary makes the whole part unknown, not just its tail.
    assert "ǂ" not in ids and "##ǂ" not in ids
    assert word_pieces("phoneǂ", packaged) == ()
    assert word_pieces("phone_caseǂ", packaged) == (ids["phone"],)  # parts are split apart
    # CJK characters are words of their own; the extension blocks the encoder does not split are not.
    assert word_pieces("日本", packaged) == (ids["日"], ids["本"])
    assert word_pieces("\U0002ceb0", packaged) == ()


def test_the_work_per_text_is_bounded() -> None:
    """A text is its first MAX_PIECES pieces among its first MAX_WORDS words; a word costs at most
    (its length x the longest piece) lookups; the words remembered are at most 100 characters."""
    packaged = table()
    fitted = WordVectors().fit(pd.DataFrame({"t": ["phone case"]}))
    counts = fitted._counts(["phone " * 1000, "case", "ǂ " * MAX_WORDS + "phone"], len(packaged.ids))
    assert counts.sum(axis=1).tolist() == [[MAX_PIECES], [1], [0]]

    class Counting(dict):
        lookups = 0

        def get(self, key, default=None):  # type: ignore[no-untyped-def]
            Counting.lookups += 1
            return super().get(key, default)

    counting = dataclasses.replace(packaged, ids=Counting(packaged.ids))
    rng = np.random.default_rng(0)
    for _ in range(20):
        word = "".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), 99)) + "ǂ"  # never splits
        Counting.lookups = 0
        assert word_pieces(word, counting) == ()
        assert Counting.lookups <= len(word) * packaged.longest
    assert packaged.longest == 18
    fitted.transform(pd.DataFrame({"t": ["x" * 5000 + " " + "y" * 101 + " phone"]}))
    assert set(fitted.__dict__["_piece_cache"]) == {"phone", "case", "ǂ"}


def test_a_text_is_the_idf_weighted_mean_of_its_pieces_normalised() -> None:
    frame = pd.DataFrame({"a": ["red dress", "red phone", "", "red"], "b": ["lace", "", "", "red"]})
    fitted = WordVectors(weight=1.5).fit(frame)
    ids, vectors = table().ids, table().vectors
    held_by = {"red": 3, "dress": 1, "lace": 1, "phone": 1}  # texts holding the piece
    idf = {w: np.log(5 / (1 + n)) + 1 for w, n in held_by.items()}
    for word, value in idf.items():
        assert fitted.idf_[ids[word]] == pytest.approx(value, rel=1e-6)
    block = fitted.transform(frame).toarray()
    expected = idf["red"] * vectors[ids["red"]] + idf["dress"] * vectors[ids["dress"]]
    expected += idf["lace"] * vectors[ids["lace"]]
    np.testing.assert_allclose(block[0], 1.5 * expected / np.linalg.norm(expected), atol=1e-5)
    assert not block[2].any()  # no words: a zero row, not NaN
    np.testing.assert_allclose(np.linalg.norm(block, axis=1), [1.5, 1.5, 0.0, 1.5], atol=1e-5)
    # A repeated word counts each time it occurs, before normalisation.
    np.testing.assert_allclose(
        block[3], 1.5 * vectors[ids["red"]] / np.linalg.norm(vectors[ids["red"]]), atol=1e-5
    )


def test_the_vectors_carry_meaning_no_text_shares() -> None:
    """Each word is nearest to its own kind among words it shares no letters' worth of text with.
    A table whose rows are shuffled or shifted (not the tokens' own) fails this."""
    kinds = {
        "iphone": "smartphone",
        "dress": "skirt",
        "sneakers": "boots",
        "necklace": "bracelet",
        "lipstick": "mascara",
        "puppy": "kitten",
        "guitar": "piano",
    }
    words, partners = list(kinds), list(kinds.values())
    similarity = np.array([_vector(w) for w in words]) @ np.array([_vector(p) for p in partners]).T
    assert list(similarity.argmax(axis=1)) == list(range(len(words)))
    assert _vector("galaxy phone") @ _vector("galaxy phone") == pytest.approx(1.0, abs=1e-5)


def test_fitted_on_more_rows_than_max_rows_the_block_is_off(caplog: pytest.LogCaptureFixture) -> None:
    texts = pd.DataFrame({"t": ["red dress", "blue phone", "lace"]})
    on = WordVectors(max_rows=3).fit(texts)
    off = WordVectors(max_rows=2).fit(texts)
    assert on.active_ and on.transform(texts).nnz == 3 * DIMS
    assert not off.active_ and off.transform(texts).shape == (3, DIMS) and off.transform(texts).nnz == 0
    assert "3 training rows > features.meaning_max_rows (2)" in caplog.text


def test_weight_zero_is_an_empty_block_of_the_same_width() -> None:
    block = (
        WordVectors(weight=0.0).fit(pd.DataFrame({"t": ["phone"]})).transform(pd.DataFrame({"t": ["x"] * 3}))
    )
    assert block.shape == (3, DIMS) and block.nnz == 0


def test_a_model_trained_with_another_table_is_refused() -> None:
    fitted = WordVectors().fit(pd.DataFrame({"t": ["phone case"]}))
    fitted.digest_ = "0" * 64
    with pytest.raises(ValueError, match="other word vectors"):
        fitted.transform(pd.DataFrame({"t": ["phone"]}))


def test_saved_and_loaded_with_the_trusted_types_without_its_word_cache(tmp_path: Path) -> None:
    frame = pd.DataFrame({"t": ["vintage leather bag", "new iphone case", "kids lego set"]})
    fitted = WordVectors().fit(frame)
    before = fitted.transform(frame).toarray()
    assert fitted.__dict__.get("_piece_cache")  # words seen are remembered in the process ...
    path = tmp_path / "vectors.skops"
    skops.io.dump(fitted, path)
    loaded = skops.io.load(path, trusted=list(TRUSTED_TYPES))
    assert "_piece_cache" not in loaded.__dict__  # ... and never saved
    np.testing.assert_array_equal(loaded.transform(frame).toarray(), before)


def test_a_saved_model_fitted_with_another_table_is_refused_on_load(tmp_path: Path) -> None:
    """model_files refuses it before it serves (the API then keeps its last good model); a model
    with the blocks turned off (weight 0, or fitted on more rows than meaning_max_rows) does not
    read the table and loads."""
    listings = generate_listings(200, seed=3)
    listings = listings[listings["price"] > 0]
    for weight, max_rows, refused in ((1.0, 500_000, True), (0.0, 500_000, False), (1.0, 50, False)):
        features = FeatureParams(meaning_weight=weight, meaning_max_rows=max_rows)
        pipeline = build_pipeline(
            build_featurizer(features), make_estimator({"family": "ridge", "alpha": 3.0})
        )
        pipeline.fit(listings[list(FEATURE_COLUMNS)], listings["price"].to_numpy())
        blocks = pipeline.named_steps["features"].named_steps["vectorize"].named_transformers_
        for name in MEANING_BLOCKS:
            blocks[name].digest_ = "f" * 64  # as if trained on another release's table
        folder = tmp_path / f"model-{weight:g}-{max_rows}"
        folder.mkdir()
        skops.io.dump(pipeline, folder / "model.skops")
        flavor = {"serialization_format": "skops", "pickled_model": "model.skops"}
        (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": {"sklearn": flavor}}))
        if refused:
            with pytest.raises(ModelRefusedError, match="other word vectors"):
                model_files.load_model_dir(folder, expected_digest=None, what="model 7")
        else:
            loaded = model_files.load_model_dir(folder, expected_digest=None, what="model 7")
            assert loaded.predict(listings[list(FEATURE_COLUMNS)].head(3)).shape == (3,)


def test_the_title_block_reads_name_brand_and_category_and_the_other_the_description() -> None:
    listings = generate_listings(300, seed=4)[list(FEATURE_COLUMNS)].reset_index(drop=True)
    featurizer = build_featurizer(FeatureParams()).fit(listings)
    slices = featurizer.named_steps["vectorize"].output_indices_
    title, description = slices["title_meaning"], slices["description_meaning"]
    base = listings.head(1)
    variants = pd.concat([base] * 6, ignore_index=True)
    variants.loc[1, "name"] = "vintage guitar"
    variants.loc[2, "brand_name"] = "Lululemon"
    variants.loc[3, "category_name"] = "Electronics/Cell Phones & Accessories/Cell Phones & Smartphones"
    variants.loc[4, "item_description"] = "brand new in box, never worn"
    variants.loc[5, "item_description"] = "No description yet"
    for frame in (
        variants,
        pd.concat([variants] * 60, ignore_index=True),
    ):  # row-wise and vectorised cleaning
        X = featurizer.transform(frame).tocsr()
        blocks = {
            name: X[:6, part].toarray() for name, part in (("title", title), ("description", description))
        }
        for row, changed in ((1, "title"), (2, "title"), (3, "title"), (4, "description")):
            unchanged = "description" if changed == "title" else "title"
            assert not np.allclose(blocks[changed][row], blocks[changed][0]), (row, changed)
            np.testing.assert_array_equal(blocks[unchanged][row], blocks[unchanged][0])
        assert not blocks["description"][5].any()  # the placeholder is no description


def test_a_piece_unseen_in_training_counts_with_the_largest_idf() -> None:
    fitted = WordVectors().fit(pd.DataFrame({"t": ["red dress", "red lace", "red"]}))
    ids, vectors = table().ids, table().vectors
    idf_red, idf_unseen = np.log(4 / 4) + 1, np.log(4 / 1) + 1
    assert fitted.idf_[ids["phone"]] == pytest.approx(idf_unseen)
    expected = idf_red * vectors[ids["red"]] + idf_unseen * vectors[ids["phone"]]
    got = fitted.transform(pd.DataFrame({"t": ["red phone"]})).toarray()[0]
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected), atol=1e-5)
