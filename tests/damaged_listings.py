"""A damaged Kaggle test file, made by the tests: the kinds of damage seen in a real broken ``test.tsv``.

``write_damaged_file`` writes ``n`` synthetic listings in the Kaggle test layout (ids ``0..n-1``)
and damages some of them the way real exports break: missing or junk condition and shipping
flags, a two-level category, an over-long name, an unbalanced quote that swallows the lines after
it, an unquoted tab, a dropped field, fully empty rows, rows whose fields cannot be separated, a
junk id, a record without an id, a duplicated id, a blank line. ``Damage`` says what a lenient
reader must make of each: which ids are imputed (and which field), which get the fallback, how
many records cannot be attributed to an id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from price_alchemy.data.files import write_listings
from price_alchemy.data.synthetic import generate_listings

FIELDS = (
    "test_id",
    "name",
    "item_condition_id",
    "category_name",
    "brand_name",
    "shipping",
    "item_description",
)


@dataclass
class Damage:
    """What was done to the file, by listing id; ``unattributable`` records have no usable id."""

    path: Path
    ids: list[int]
    imputed: dict[int, set[str]] = field(default_factory=dict)
    fallback: set[int] = field(default_factory=set)
    unattributable: int = 0
    duplicates: int = 0
    quote_id: int = -1
    swallowed: list[int] = field(default_factory=list)


def write_damaged_file(path: Path, n: int = 400, seed: int = 0) -> Damage:
    """Write the damaged file (``n`` >= 200) and return what was damaged."""
    clean = write_listings(
        generate_listings(n, seed=seed, with_price=False), path.with_name("clean.tsv"), id_column="test_id"
    )
    header, *lines = clean.read_text(encoding="utf-8").splitlines(keepends=True)
    # The synthetic text has no quotes or tabs, so each listing is one line of 7 fields.
    records = [line.rstrip("\n").split("\t") for line in lines]
    assert all(len(r) == len(FIELDS) for r in records) and not any('"' in line for line in lines)
    damage = Damage(path, list(range(n)))
    col = {name: i for i, name in enumerate(FIELDS)}

    def set_field(listing: int, column: str, value: str, imputed: str | None = None) -> None:
        records[listing][col[column]] = value
        if imputed:
            damage.imputed.setdefault(listing, set()).add(imputed)

    for i in (10, 11, 12):
        set_field(i, "shipping", "", "shipping")  # a missing shipping flag
    for i in (20, 21):
        set_field(i, "item_condition_id", "", "item_condition_id")  # a missing condition
    for i in (30, 31):
        set_field(i, "shipping", "", "shipping")
        set_field(i, "item_condition_id", "", "item_condition_id")
    set_field(40, "item_condition_id", "new", "item_condition_id")  # junk
    set_field(41, "shipping", "yes", "shipping")
    set_field(42, "item_condition_id", "9", "item_condition_id")
    set_field(50, "category_name", "Electronics/Phones", "category_name")  # two levels only
    set_field(60, "name", "Vintage lot " * 30, "name")  # 360 characters
    for i in (90, 91):
        for column in FIELDS[1:]:
            set_field(i, column, "")  # an id and nothing else
    damage.fallback |= {90, 91}

    text = [header]
    for i, record in enumerate(records):
        line = "\t".join(record) + "\n"
        if i == 70:  # an unbalanced quote: swallows the lines after it (up to the next quote)
            line = line.replace("\t", '\t"', 1)
            damage.quote_id = i
            damage.imputed.setdefault(i, set()).add("(record)")
            damage.swallowed = list(range(71, 80))
        elif i == 80:  # an unquoted tab in the description, and the quote that closed the one above
            line = "\t".join([*record[:-1], 'has a "quoted\tword']) + "\n"
            damage.imputed.setdefault(i, set()).add("(record)")
        elif i == 81:  # the brand field dropped: every field after it shifted left
            line = "\t".join(record[:4] + record[5:]) + "\n"
            damage.imputed.setdefault(i, set()).add("(record)")
        elif i == 92:  # fields that cannot be separated: the id and one lump of text
            line = f"{i}\t{' '.join(record[1:])}\n"
            damage.fallback.add(i)
        text.append(line)
        if i == 100:
            text.append("\n")  # a blank line: not a record
            text.append("\t" * (len(FIELDS) - 1) + "\n")  # a fully empty row: no id
            text.append("abc\tJunk id\t1\tWomen/Tops & Blouses/Blouse\t\t1\tdesc\n")  # junk id
            text.append("\tNo id\t1\tWomen/Tops & Blouses/Blouse\t\t1\tdesc\n")  # no id
            damage.unattributable += 3
            text.append("\t".join(records[5]) + "\n")  # id 5 again
            damage.duplicates += 1
    path.write_text("".join(text), encoding="utf-8")
    clean.unlink()
    return damage
