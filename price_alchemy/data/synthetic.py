"""Synthetic Mercari-like listings for tests, demos and benchmarks (no real data needed).

The generator mimics the real ``train.tsv`` marginals (category tree, ~43% missing brands, condition
and shipping mix, "No description yet", a long-tailed whole-dollar price with a few zeros) and
makes the price a learnable function of the features: log price = category level + brand level +
condition + price-carrying words in name and description (+ "bundle", "14k gold", "for parts", ...)
+ shipping + noise. A TF-IDF + Ridge model therefore finds real signal, roughly as on real data.
Everything is vectorised with numpy and deterministic for a seed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from price_alchemy import schema

# Top level: (share of listings, P(brand missing), {mid: (median price, leaves)}).
_TREE: dict[str, tuple[float, float, dict[str, tuple[float, tuple[str, ...]]]]] = {
    "Women": (0.448, 0.40, {
        "Athletic Apparel": (20, ("Pants, Tights, Leggings", "Shorts", "Shirts & Tops", "Sports Bras")),
        "Tops & Blouses": (11, ("T-Shirts", "Blouse", "Tank, Cami", "Button Down Shirt")),
        "Dresses": (15, ("Above Knee, Mini", "Knee-Length", "Maxi")),
        "Shoes": (26, ("Boots", "Sandals", "Athletic", "Fashion Sneakers")),
        "Jewelry": (14, ("Necklaces", "Bracelets", "Rings", "Earrings")),
        "Women's Handbags": (32, ("Shoulder Bag", "Totes & Shoppers", "Cross-Body", "Wallets")),
        "Jeans": (18, ("Slim, Skinny", "Boot Cut", "Straight Leg")),
        "Underwear": (16, ("Bras", "Panties")),
        "Sweaters": (17, ("Cardigan", "Hooded", "Crewneck")),
        "Swimwear": (16, ("Two-Piece", "One-Piece")),
    }),
    "Beauty": (0.140, 0.40, {
        "Makeup": (12, ("Lips", "Face", "Eyes", "Makeup Palettes")),
        "Skin Care": (17, ("Face", "Body")),
        "Fragrance": (28, ("Women", "Men")),
        "Hair Care": (18, ("Styling Tools", "Shampoo & Conditioner")),
        "Bath & Body": (13, ("Bath", "Candles & Home Scents")),
    }),
    "Kids": (0.116, 0.46, {
        "Toys": (15, ("Dolls & Accessories", "Action Figures & Statues", "Stuffed Animals & Plush")),
        "Girls 2T-5T": (11, ("Tops & T-Shirts", "Dresses", "Shoes")),
        "Boys 0-24 Mos": (10, ("One-Pieces", "Bottoms", "Shoes")),
        "Gear": (40, ("Strollers", "Car Seats", "Backpacks & Carriers")),
        "Feeding": (14, ("Bottle-Feeding", "Breastfeeding")),
    }),
    "Electronics": (0.083, 0.36, {
        "Cell Phones & Accessories": (12, ("Cases, Covers & Skins", "Cell Phones & Smartphones", "Headsets")),
        "Video Games & Consoles": (22, ("Games", "Consoles", "Accessories")),
        "Computers & Tablets": (45, ("Laptops & Netbooks", "iPad", "Components & Parts")),
        "Cameras & Photography": (50, ("Digital Cameras", "Lenses & Filters")),
        "TV, Audio & Surveillance": (30, ("Headphones", "Speakers")),
    }),
    "Men": (0.063, 0.30, {
        "Tops": (15, ("T-shirts", "Button-Front", "Hoodie")),
        "Shoes": (48, ("Athletic", "Boots", "Fashion Sneakers")),
        "Athletic Apparel": (20, ("Shorts", "Jackets", "Shirts & Tops")),
        "Bottoms": (22, ("Jeans", "Shorts", "Pants")),
        "Coats & Jackets": (38, ("Lightweight", "Parka", "Vest")),
    }),
    "Home": (0.046, 0.60, {
        "Home Décor": (16, ("Home Décor Accents", "Candles", "Wall Decor")),
        "Kitchen & Dining": (18, ("Coffee & Tea Accessories", "Dining & Entertaining", "Kitchen Utensils")),
        "Bedding": (25, ("Quilts", "Sheets", "Comforters")),
        "Storage & Organization": (15, ("Baskets", "Jewelry Boxes")),
    }),
    "Vintage & Collectibles": (0.031, 0.75, {
        "Collectibles": (15, ("Figurine", "Doll", "Ornament")),
        "Trading Cards": (12, ("Sports", "Animation")),
        "Toy": (15, ("Action Figure", "Animation")),
        "Jewelry": (18, ("Necklace", "Ring", "Brooch")),
    }),
    "Other": (0.030, 0.65, {
        "Office supplies": (10, ("Writing", "Shipping Supplies")),
        "Daily & Travel items": (10, ("Personal Care", "Health Care")),
        "Books": (10, ("Children", "Literature & Fiction")),
        "Pet Supplies": (14, ("Dogs", "Cats")),
    }),
    "Handmade": (0.021, 0.95, {
        "Jewelry": (10, ("Bracelets", "Earrings", "Necklaces")),
        "Accessories": (8, ("Keychain", "Hair")),
        "Paper Goods": (7, ("Stickers", "Journal")),
    }),
    "Sports & Outdoors": (0.017, 0.50, {
        "Exercise": (15, ("Fitness Accessories", "Yoga & Pilates")),
        "Outdoors": (25, ("Camping & Hiking", "Fishing")),
        "Fan Shop": (18, ("NFL", "MLB", "NBA")),
        "Apparel": (18, ("Girls", "Men")),
    }),
}  # fmt: skip
# Leaves far from their mid level (log-price shift).
_LEAF_SHIFT = {
    "Cell Phones & Smartphones": 1.9, "Consoles": 1.6, "Laptops & Netbooks": 1.3, "iPad": 1.4,
    "Cases, Covers & Skins": -0.4, "Strollers": 0.9, "Car Seats": 0.6, "Boots": 0.3,
    "Digital Cameras": 0.6, "Makeup Palettes": 0.4, "Stickers": -0.5, "Wallets": -0.2,
}  # fmt: skip
# Brands per top level with their log-price shift; the first ones are the most common.
_BRANDS: dict[str, str] = {
    "Women": "Nike .3|PINK .2|Victoria's Secret .1|LuLaRoe .3|Lululemon .7|Forever 21 -.4|American Eagle -.1|"
    "Michael Kors .9|Coach .9|Kate Spade .9|Old Navy -.4|Tory Burch 1.1|UGG Australia .9|Louis Vuitton 2.4",
    "Beauty": "Too Faced .3|Urban Decay .3|MAC .2|Bath & Body Works -.1|Sephora .2|"
    "Anastasia Beverly Hills .4|"
    "Kylie Cosmetics .6|Clinique .1|NYX -.5|Mary Kay 0",
    "Kids": "Carter's -.4|Disney 0|Nike .2|LEGO .7|Fisher-Price .1|Funko 0|Gap -.2|Graco .8",
    "Electronics": "Apple 1.0|Samsung .6|Sony .7|Nintendo .8|Xbox .7|Beats .8|Otterbox -.1|Fitbit .6|"
    "Bose 1.0",
    "Men": "Nike .3|Adidas .3|Jordan 1.0|Under Armour .1|Supreme 1.2|Levi's .2|Polo Ralph Lauren .3|"
    "The North Face .8|Vans .3",
    "Home": "Pottery Barn .7|Yankee Candle .1|Rae Dunn .4|Keurig .5|Tupperware -.1|KitchenAid 1.2",
    "Vintage & Collectibles": "Disney .1|Pokemon 0|Funko .1|Hot Wheels -.3",
    "Other": "Scentsy .2|Avon -.2|Hallmark -.2",
    "Handmade": "Alex and Ani .2|Pandora .8",
    "Sports & Outdoors": "Nike .2|Under Armour .1|Yeti .8|Coleman .2",
}
CONDITION_SHARES = (0.4405, 0.2560, 0.2810, 0.0209, 0.0016)
_CONDITION_EFFECT = np.array([0.08, 0.0, -0.06, -0.2, -0.35])
_CONDITION_TEXT = (
    "Brand new, never used.", "Like new, worn once.", "Gently used, great condition.",
    "Used, has some flaws.", "Well loved, heavy wear.",
)  # fmt: skip
# Price-carrying words: (share of listings, log-price effect, name text, description text).
_WORDS = {
    "nwt": (0.09, 0.15, "NWT", "New with tags."),
    "bundle": (0.05, 0.55, "Bundle", "Bundle of items, all included."),
    "lot": (0.03, 0.45, "Lot of 3", "Lot of 3, sold together."),
    "gold": (0.02, 0.9, "14k Gold", "Real 14k gold, stamped."),
    "authentic": (0.07, 0.3, "Authentic", "100% authentic, bought at the store."),
    "vintage": (0.05, 0.15, "Vintage", "Vintage piece, rare find."),
    "broken": (0.015, -0.9, "For Parts", "Broken, selling for parts only."),
}
_COLORS = ("Black", "White", "Pink", "Blue", "Red", "Gray", "Green", "Purple", "Navy", "Beige")
_SIZES = ("XS", "S", "M", "L", "XL", "6", "7", "8", "9", "10", "OS")
_FILLER = (
    "Smoke free home.", "Price is firm.", "Open to offers.", "Ships fast.", "Great gift.",
    "Comes from a pet free home.", "Retail [rm].", "Super cute and comfy.", "No trades.",
    "Perfect for summer.",
)  # fmt: skip
NO_DESCRIPTION_SHARE = 0.058
MISSING_CATEGORY_SHARE = 0.0045
ZERO_PRICE_EVERY = 1000  # ids congruent to 500 modulo this get price 0 (~0.1%, in every 1000-id window)
_SIGNAL_SCALE = 0.75
_NOISE_SD = 0.45
_NOISE_DF = 4  # Student-t noise: real prices have heavier tails than a log-normal
_MEDIAN_PRICE = 13.0
_MIN_PRICE, _MAX_PRICE = 3.0, 2000.0
BLOCK_ROWS = 100_000


class _Catalogue(NamedTuple):
    """The category tree flattened into arrays the generator indexes with numpy."""

    paths: np.ndarray  # "Top/Mid/Leaf"
    nouns: np.ndarray  # leaf used as the item noun in names
    top: np.ndarray  # top index per leaf
    level: np.ndarray  # log median price per leaf
    share: np.ndarray  # probability per leaf
    brand_missing: np.ndarray  # P(no brand) per top
    brands: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per top: names, log shifts, probabilities


@lru_cache(maxsize=1)
def _catalogue() -> _Catalogue:
    paths, nouns, tops, levels, shares = [], [], [], [], []
    brands = []
    for t, (top, (top_share, _, mids)) in enumerate(_TREE.items()):
        mid_w = 1.0 / np.arange(1, len(mids) + 1) ** 0.7
        for m, (mid, (median, leaves)) in enumerate(mids.items()):
            leaf_w = 1.0 / np.arange(1, len(leaves) + 1) ** 0.5
            for leaf, lw in zip(leaves, leaf_w / leaf_w.sum(), strict=True):
                paths.append(f"{top}/{mid}/{leaf}")
                nouns.append(leaf.split(",")[0])
                tops.append(t)
                levels.append(np.log(median) + _LEAF_SHIFT.get(leaf, 0.0))
                shares.append(top_share * mid_w[m] / mid_w.sum() * lw)
        names, shifts = zip(*(b.rsplit(" ", 1) for b in _BRANDS[top].split("|")), strict=True)
        weights = 1.0 / np.arange(1, len(names) + 1) ** 0.8
        brands.append((np.array(names, dtype=object), np.array(shifts, dtype=float), weights / weights.sum()))
    share = np.array(shares)
    return _Catalogue(
        np.array(paths, dtype=object), np.array(nouns, dtype=object), np.array(tops), np.array(levels),
        share / share.sum(), np.array([v[1] for v in _TREE.values()]), brands,
    )  # fmt: skip


def generate_listings(n: int, *, seed: int = 0, start_id: int = 0, with_price: bool = True) -> pd.DataFrame:
    """``n`` Mercari-like listings in the canonical schema, ids ``start_id .. start_id + n - 1``.

    The same ``seed`` gives the same frame; ``with_price=False`` gives an unlabelled (test-like) frame.
    Rows are made in blocks of :data:`BLOCK_ROWS` (each with its own random stream derived from the
    seed) so that the temporary arrays stay small for millions of rows.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    blocks = [
        _block(min(BLOCK_ROWS, n - first), np.random.default_rng([seed, k]), start_id + first, with_price)
        for k, first in enumerate(range(0, n, BLOCK_ROWS))
    ]
    if not blocks:
        return _block(0, np.random.default_rng(seed), start_id, with_price)
    return pd.concat(blocks, ignore_index=True) if len(blocks) > 1 else blocks[0]


def _block(n: int, rng: np.random.Generator, start_id: int, with_price: bool) -> pd.DataFrame:
    cat = _catalogue()
    leaf = rng.choice(len(cat.paths), size=n, p=cat.share)
    top = cat.top[leaf]
    log_price = cat.level[leaf].copy()

    brand = np.full(n, None, dtype=object)
    has_brand = rng.random(n) >= cat.brand_missing[top]
    for t, (names, shifts, probs) in enumerate(cat.brands):
        rows = np.flatnonzero(has_brand & (top == t))
        pick = rng.choice(len(names), size=len(rows), p=probs)
        brand[rows] = names[pick]
        log_price[rows] += shifts[pick]

    condition = rng.choice(5, size=n, p=np.array(CONDITION_SHARES) / sum(CONDITION_SHARES))
    log_price += _CONDITION_EFFECT[condition]
    words = _draw_words(rng, n, condition, cat.paths[leaf])
    for key, (_, effect, _, _) in _WORDS.items():
        log_price += effect * words[key]

    # Shrink the signal around the median so that noise keeps R2 near what real data allows.
    log_price = (
        np.log(_MEDIAN_PRICE)
        + _SIGNAL_SCALE * (log_price - np.log(16.0))
        + _NOISE_SD * rng.standard_t(_NOISE_DF, n)
    )
    # Sellers pay shipping more often for cheap items; overall ~45% of listings.
    shipping = (rng.random(n) < 1 / (1 + np.exp(1.1 * (log_price - np.log(16.0))))).astype(np.int64)
    log_price -= 0.1 * shipping
    price = np.clip(np.round(np.exp(log_price)), _MIN_PRICE, _MAX_PRICE)
    ids = np.arange(start_id, start_id + n, dtype=np.int64)
    price[ids % ZERO_PRICE_EVERY == ZERO_PRICE_EVERY // 2] = 0.0

    category = cat.paths[leaf].copy()
    category[rng.random(n) < MISSING_CATEGORY_SHARE] = None
    frame = pd.DataFrame(
        {
            schema.LISTING_ID: ids,
            "name": _names(rng, n, brand, cat.nouns[leaf], words),
            "item_condition_id": condition + 1,
            "category_name": category,
            "brand_name": brand,
            "shipping": shipping,
            "item_description": _descriptions(rng, n, condition, shipping, words),
            schema.PRICE: price if with_price else np.nan,
        }
    )
    return frame.astype(schema.DTYPES)


def _draw_words(rng: np.random.Generator, n: int, condition: np.ndarray, paths: np.ndarray) -> dict[str, Any]:
    """Which listings carry each price word (tags go with new items, gold with jewelry, parts with wear)."""
    u = rng.random((len(_WORDS), n))
    share = {k: np.full(n, v[0]) for k, v in _WORDS.items()}
    share["nwt"] = np.where(condition == 0, 0.18, 0.01)
    share["broken"] = np.where(condition >= 3, 0.25, 0.008)
    jewelry = pd.Series(paths, dtype=object).str.contains("Jewelry", na=False).to_numpy()
    share["gold"] = np.where(jewelry, 0.2, 0.0)
    share["vintage"] = np.where(pd.Series(paths).str.startswith("Vintage").to_numpy(), 0.3, 0.04)
    return {k: u[i] < share[k] for i, k in enumerate(_WORDS)}


def _names(
    rng: np.random.Generator, n: int, brand: np.ndarray, noun: np.ndarray, words: dict[str, Any]
) -> list[str]:
    """Name = [brand] [price word] [color] noun [size], like real listing titles."""
    flag = np.full(n, "", dtype=object)
    for key, (_, _, text, _) in _WORDS.items():
        flag[words[key] & (rng.random(n) < 0.7)] = text
    show_brand = np.where((brand != None) & (rng.random(n) < 0.65), brand, "")  # noqa: E711
    color = np.where(
        rng.random(n) < 0.35, np.array(_COLORS, dtype=object)[rng.integers(0, len(_COLORS), n)], ""
    )
    size = np.where(
        rng.random(n) < 0.3, "Size " + np.array(_SIZES, dtype=object)[rng.integers(0, len(_SIZES), n)], ""
    )
    return [
        " ".join(p for p in parts if p) for parts in zip(show_brand, flag, color, noun, size, strict=True)
    ]


def _descriptions(
    rng: np.random.Generator, n: int, condition: np.ndarray, shipping: np.ndarray, words: dict[str, Any]
) -> list[str]:
    """Condition sentence, price-word sentences, fillers; ~5.8% "No description yet"."""
    parts = [np.array(_CONDITION_TEXT, dtype=object)[condition]]
    for key, (_, _, _, text) in _WORDS.items():
        parts.append(np.where(words[key], text, ""))
    filler, size = np.array(_FILLER, dtype=object), len(_FILLER)
    pick = rng.integers(0, size, n)
    for share, step in ((0.8, 0), (0.5, 1 + size // 2), (0.25, size // 2 - 1)):
        pick = (pick + rng.integers(1, step + 1, n)) % size if step else pick  # three distinct fillers
        parts.append(np.where(rng.random(n) < share, filler[pick], ""))
    parts.append(np.where((shipping == 1) & (rng.random(n) < 0.4), "Free shipping!", ""))
    out = [" ".join(p for p in row if p) for row in zip(*parts, strict=True)]
    for i in np.flatnonzero(rng.random(n) < NO_DESCRIPTION_SHARE):
        out[i] = schema.NO_DESCRIPTION
    return out


def listing_profile(df: pd.DataFrame) -> dict[str, Any]:
    """Summary statistics that characterise a listings sample (compares generated with real data)."""
    price = df[schema.PRICE].dropna()
    return {
        "n_rows": len(df),
        "columns": list(df.columns),
        "dtypes": {c: str(t) for c, t in df.dtypes.items()},
        "missing_rate": {c: round(float(df[c].isna().mean()), 4) for c in df.columns},
        "price_quantiles": {str(q): float(price.quantile(q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)},
        "price_mean": round(float(price.mean()), 2),
        "price_max": float(price.max()),
        "zero_price_rate": round(float((price == 0).mean()), 4),
        "condition_mix": {
            str(k): round(float(v), 4)
            for k, v in df["item_condition_id"].value_counts(normalize=True).sort_index().items()
        },
        "shipping_rate": round(float(df["shipping"].mean()), 4),
        "no_description_rate": round(float((df["item_description"] == schema.NO_DESCRIPTION).mean()), 4),
        "category_depth_3_rate": round(float(df["category_name"].dropna().str.count("/").eq(2).mean()), 4),
    }
