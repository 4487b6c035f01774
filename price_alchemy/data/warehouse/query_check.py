"""The check every user query passes before a warehouse runs it: one SELECT over our two tables.

``query()`` takes SQL from people who can trigger a DAG or run the CLI, so it must not become a
door out of the warehouse (DuckDB's ``read_text('/etc/hostname')``, ``glob('/etc/*')``, a file
path used as a table, ``ATTACH``, ``COPY``; BigQuery's ``EXTERNAL_QUERY`` or another dataset).
The SQL is parsed with sqlglot in the backend's dialect, *after* the placeholders are
substituted, so the parser sees exactly the text the engine will run; the text itself is never
rewritten (stripping comments with a regular expression used to change string literals such as
``'%/*%'``). Accepted: exactly one ``SELECT`` (``WITH ... SELECT``, set operations, subqueries)
whose table references are the listings and quarantine tables or CTEs in scope. Refused, with
a message naming what was found: any other statement, a second statement, DML or DDL nested in
the query, table functions, and any other table or file.

This is the first of several gates: DuckDB also runs user queries with external access disabled
in a read-only transaction, and BigQuery's dry run must report a ``SELECT``.
"""

from __future__ import annotations

from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from price_alchemy.errors import WarehouseError

Dialect = Literal["duckdb", "bigquery"]
LISTINGS_PLACEHOLDER = "{listings}"
QUARANTINE_PLACEHOLDER = "{quarantine}"

#: Nodes that never belong in a read-only query, wherever they appear (a CTE holding a DELETE,
#: ``SELECT ... INTO``, a statement sqlglot could only keep as an opaque command).
_FORBIDDEN = (
    exp.DML,
    exp.DDL,
    exp.Into,
    exp.Command,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Attach,
    exp.Detach,
    exp.Pragma,
    exp.Set,
    exp.Install,
    exp.Use,
    exp.Export,
    exp.LoadData,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Grant,
    exp.Revoke,
)
#: What may stand after FROM or JOIN: a table name (checked below), a subquery, an array
#: unnested, inline VALUES or a LATERAL subquery.
_SOURCES = (exp.Table, exp.Subquery, exp.Unnest, exp.Values, exp.Lateral)


def render_query(sql: str, *, listings: str, quarantine: str, dialect: Dialect) -> str:
    """Substitute the table names for the placeholders, check the result, return it unchanged.

    Only the two placeholders are replaced (not ``str.format``), so braces elsewhere in the
    query (JSON paths, regular expressions) pass through untouched; nothing else in the text is
    altered, comments and a trailing ``;`` included.
    """
    rendered = sql.replace(LISTINGS_PLACEHOLDER, listings).replace(QUARANTINE_PLACEHOLDER, quarantine)
    check_query(rendered, tables=(listings, quarantine), dialect=dialect)
    return rendered


def check_query(sql: str, *, tables: tuple[str, ...], dialect: Dialect) -> None:
    """Raise :class:`WarehouseError` unless ``sql`` is one SELECT reading only ``tables``."""
    try:
        parsed = sqlglot.parse(sql, read=dialect)
    except SqlglotError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WarehouseError(f"query() cannot parse the SQL ({dialect} dialect): {first_line}") from exc
    # A trailing ';' (or ';' then a comment) leaves an empty statement behind: not a statement.
    statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    if len(statements) != 1:
        raise WarehouseError(f"query() runs exactly one statement; found {len(statements)}")
    root = statements[0]
    if not isinstance(root, exp.Query):
        raise WarehouseError(f"query() accepts one read-only SELECT only; refused {_kind(root)}")
    allowed = {_key(exp.to_table(name, dialect=dialect), dialect) for name in tables}
    for node in root.walk():
        if isinstance(node, _FORBIDDEN):
            raise WarehouseError(f"query() accepts a read-only SELECT only; refused {_kind(node)} inside it")
        if isinstance(node, exp.From | exp.Join) and not isinstance(node.this, _SOURCES):
            raise WarehouseError(f"query() refuses the FROM item {_show(node.this, dialect)}")
        if isinstance(node, exp.Lateral) and isinstance(node.this, exp.Func):  # LATERAL read_text(...)
            raise _table_function(node.this, dialect)
        if isinstance(node, exp.Table):
            _check_table(node, allowed, dialect)


def _check_table(table: exp.Table, allowed: set[tuple[str, ...]], dialect: Dialect) -> None:
    if isinstance(table.this, exp.Func):
        raise _table_function(table.this, dialect)
    if not isinstance(table.this, exp.Identifier):
        raise WarehouseError(f"query() refuses the table reference {_show(table, dialect)}")
    if _key(table, dialect) in allowed:
        return
    if not table.args.get("db") and not table.args.get("catalog") and _is_cte(table, dialect):
        return
    raise WarehouseError(
        f"query() reads only {LISTINGS_PLACEHOLDER} and {QUARANTINE_PLACEHOLDER}; refused table or file "
        f"{_show(table, dialect)}"
    )


def _table_function(func: exp.Func, dialect: Dialect) -> WarehouseError:
    return WarehouseError(
        f"query() refuses table function {_show(func, dialect)}: a query reads only "
        f"{LISTINGS_PLACEHOLDER} and {QUARANTINE_PLACEHOLDER}"
    )


def _is_cte(table: exp.Table, dialect: Dialect) -> bool:
    """Whether ``table`` names a CTE visible where it stands (so it reads nothing by itself).

    Inside CTE number ``i`` of a WITH only the earlier CTEs are visible (and CTE ``i`` itself
    under WITH RECURSIVE); the query that owns the WITH sees all of them. Matching is never
    looser than the engine's: a name the engine would resolve to a real table or a file is
    checked as one.
    """
    name = _fold(table.name, dialect)
    child: exp.Expr = table
    node = table.parent
    while node is not None:
        if isinstance(node, exp.With) and isinstance(child, exp.CTE):
            position = child.index or 0
            visible = node.expressions[: position + 1 if node.args.get("recursive") else position]
            if name in {_fold(cte.alias, dialect) for cte in visible}:
                return True
        elif isinstance(node, exp.Query):
            with_ = node.args.get("with_") or node.args.get("with")
            ctes = with_.expressions if isinstance(with_, exp.With) and child is not with_ else []
            if name in {_fold(cte.alias, dialect) for cte in ctes}:
                return True
        child, node = node, node.parent
    return False


def _fold(name: str, dialect: Dialect) -> str:
    """DuckDB resolves identifiers case-insensitively; BigQuery table names are case-sensitive."""
    return name.lower() if dialect == "duckdb" else name


def _key(table: exp.Table, dialect: Dialect) -> tuple[str, ...]:
    return tuple(_fold(part, dialect) for part in (table.catalog, table.db, table.name))


def _kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):  # e.g. LOAD, EXPLAIN: sqlglot keeps the leading keyword
        return str(node.this).upper()
    return node.key.upper()


def _show(node: exp.Expr, dialect: Dialect) -> str:
    text = node.sql(dialect=dialect)
    return text if len(text) <= 80 else text[:77] + "..."
