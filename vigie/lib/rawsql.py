"""Hot-path statements written once from a model's metadata, read as the ORM would read them.

For the few statements that run on every document read (the door's lookup, the audit
append), building an ORM query cost several times what the database spends answering it.
These helpers keep what makes the ORM safe to leave: table and column names come from the
models' `_meta` (quoted by the backend), every value is a parameter, and a column is
converted on its way in and out exactly as the ORM's compiler converts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, TypeVar, cast

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import Field, Model
from django.utils.connection import ConnectionProxy

Converter = Callable[[Any, Any, Any], Any]
M = TypeVar("M", bound=Model)
T = TypeVar("T")


def column(model: type[Model], name: str, conn: BaseDatabaseWrapper) -> str:
    """The quoted column of `model.name`."""
    return conn.ops.quote_name(str(getattr(model._meta.get_field(name), "column")))  # noqa: B009


def table(model: type[Model], conn: BaseDatabaseWrapper) -> str:
    return conn.ops.quote_name(model._meta.db_table)


class Reader:
    """Turns a column value as the database returns it into the field's Python value, with
    the converters the ORM's compiler would apply (SQLite's text dates and datetimes, a JSON
    field's decoding, ...).

    Built once per database alias and shared by threads: it keeps no connection (Django's
    connections belong to the thread that opened them), the caller passes its own.
    """

    def __init__(self, field: Field[Any, Any], conn: BaseDatabaseWrapper) -> None:
        self.expression = field.get_col(field.model._meta.db_table)
        own: list[Converter] = cast(Any, field).get_db_converters(conn)
        self.converters = [*conn.ops.get_db_converters(self.expression), *own]

    def __call__(self, value: Any, conn: BaseDatabaseWrapper) -> Any:
        for converter in self.converters:
            value = converter(value, self.expression, conn)
        return value


def instance(
    model: type[Model],
    fields: Sequence[Field[Any, Any]],
    readers: Sequence[Reader],
    values: Sequence[Any],
    conn: BaseDatabaseWrapper,
) -> Any:
    """A model instance from one row's `values` (in `fields` order), as a queryset builds it."""
    converted = [
        read(value, conn) if read.converters else value
        for read, value in zip(readers, values, strict=True)
    ]
    return model.from_db(conn.alias, [f.attname for f in fields], converted)


_SELECTS: dict[tuple[str, type[Model], str], tuple[str, list[Field[Any, Any]], list[Reader]]] = {}


def first_by(model: type[M], name: str, value: Any, conn: BaseDatabaseWrapper) -> M | None:
    """`model.objects.filter(<name>=value).first()` for a unique column `name`, in one
    statement written once per database: the ORM spent more CPU building the query than
    the database spends answering it (the API key and the patient of every ingest)."""
    field = model._meta.get_field(name)
    if not (getattr(field, "unique", False) or getattr(field, "primary_key", False)):
        # Without uniqueness, .first() depends on an ORDER BY this helper does not write.
        raise ValueError(f"{model.__name__}.{name} is not unique")
    key = (conn.alias, model, name)
    known = _SELECTS.get(key)
    if known is None:
        fields = list(model._meta.concrete_fields)
        columns = ", ".join(conn.ops.quote_name(str(f.column)) for f in fields)
        # Names from the model's metadata; the value a parameter.
        sql = f"SELECT {columns} FROM {table(model, conn)} WHERE {column(model, name, conn)} = %s"  # noqa: S608
        known = _SELECTS[key] = (sql, fields, [Reader(f, conn) for f in fields])
    sql, fields, readers = known
    with conn.cursor() as cursor:
        cursor.execute(sql, [cast(Any, field).get_db_prep_value(value, conn, prepared=False)])
        row = cursor.fetchone()
    return None if row is None else cast(M, instance(model, fields, readers, row, conn))


def many_by(model: type[M], name: str, values: Sequence[Any], conn: BaseDatabaseWrapper) -> list[M]:
    """`list(model.objects.filter(<name>__in=values))` for a unique column `name` (in no
    particular order), in one statement per 500 values: a round's look-ups at once (the
    patients of a round of messages) instead of one `first_by` each."""
    field = model._meta.get_field(name)
    if not (getattr(field, "unique", False) or getattr(field, "primary_key", False)):
        raise ValueError(f"{model.__name__}.{name} is not unique")
    conn = resolved(conn)
    columns, fields, readers = _row_reader(model, conn)
    prepared = [cast(Any, field).get_db_prep_value(v, conn, prepared=False) for v in values]
    found: list[M] = []
    with conn.cursor() as cursor:
        for start in range(0, len(prepared), _IN_CHUNK):
            part = prepared[start : start + _IN_CHUNK]
            marks = ", ".join(["%s"] * len(part))
            # Names from the model's metadata; every value a parameter.
            cursor.execute(
                f"SELECT {columns} FROM {table(model, conn)}"  # noqa: S608
                f" WHERE {column(model, name, conn)} IN ({marks})",
                part,
            )
            found.extend(
                cast(M, instance(model, fields, readers, row, conn)) for row in cursor.fetchall()
            )
    return found


_ONCE: dict[tuple[str, str, str], Any] = {}


def once_per_database(name: str, conn: BaseDatabaseWrapper, build: Callable[[], T]) -> T:
    """`build()`'s result (a statement's text, say), worked out once per database under
    `name`: hot paths that wrote the same SQL anew on every round spent more CPU on it than
    on running it."""
    key = (name, conn.alias, conn.vendor)
    if key not in _ONCE:
        _ONCE[key] = build()
    return cast(T, _ONCE[key])


# Values per IN (...): below every backend's limit on parameters per statement.
_IN_CHUNK = 500

_ROW_READERS: dict[
    tuple[str, str, type[Model]], tuple[str, list[Field[Any, Any]], list[Reader]]
] = {}


def _row_reader(
    model: type[Model], conn: BaseDatabaseWrapper
) -> tuple[str, list[Field[Any, Any]], list[Reader]]:
    """`model`'s quoted columns, its fields and their readers, worked out once per database
    (a round's look-up built them anew each time, which cost more than the query)."""
    key = (conn.alias, conn.vendor, model)
    known = _ROW_READERS.get(key)
    if known is None:
        fields = list(model._meta.concrete_fields)
        columns = ", ".join(conn.ops.quote_name(str(f.column)) for f in fields)
        known = _ROW_READERS[key] = (columns, fields, [Reader(f, conn) for f in fields])
    return known


def resolved(conn: BaseDatabaseWrapper) -> BaseDatabaseWrapper:
    """The thread's connection itself when given Django's `connection` proxy: a statement's
    every field conversion reads the connection, each read through the proxy a thread-local
    lookup (a tenth of an insert's CPU)."""
    if isinstance(conn, ConnectionProxy):
        real: BaseDatabaseWrapper = conn._connections[conn._alias]
        return real
    return conn


def insert(row: Model, conn: BaseDatabaseWrapper) -> None:
    """INSERT the new `row`, primary key included, as `row.save(force_insert=True)` would
    write it: each field's `pre_save` and `get_db_prep_save`, so defaults, `auto_now_add`
    and conversions are the ORM's own. No save signals and no `save()` override run: for
    models whose saves need neither (a Document at intake: proven equal by a differential
    test), on the path where building the INSERT cost the ORM more than running it."""
    insert_many([row], conn)


def insert_many(rows: Sequence[Model], conn: BaseDatabaseWrapper) -> None:
    """`insert` for each of `rows`, in one INSERT ... VALUES (...), (...) per model instead
    of one statement per row: a round of intake writes several rows per document, and each
    statement cost more CPU to send than the database spent on its row.

    Rows are written model by model, in the order each model first appears (rows whose
    automatic key is still unset apart from those that set it: their column lists differ),
    in as many statements as the backend's parameter limit needs (SQLite: 999). Same values
    as `insert` writes, row for row (a differential test holds both to the ORM). An error
    (a unique constraint) fails the statement, hence every row in it: the caller's
    transaction decides what to roll back."""
    if not rows:
        return
    conn = resolved(conn)
    groups: dict[tuple[type[Model], bool], list[Model]] = {}
    for row in rows:
        meta = type(row)._meta
        # An automatic primary key not set yet is the database's to assign (PostgreSQL
        # refuses an explicit NULL in an identity column); its value is not read back.
        auto = bool(getattr(meta.pk, "db_returning", False)) and row.pk is None
        groups.setdefault((type(row), auto), []).append(row)
    with conn.cursor() as cursor:
        for (model, auto), group in groups.items():
            plan = insert_plan(model, conn, without_pk=auto)
            values = [plan.values(row, conn) for row in group]
            per_statement = plan.per_statement(conn, group)
            for start in range(0, len(values), per_statement):
                part = values[start : start + per_statement]
                # Names from the model's metadata; every value a parameter.
                cursor.execute(
                    f"INSERT INTO {plan.table} ({plan.columns})"  # noqa: S608
                    f" VALUES {', '.join([plan.one] * len(part))}",
                    [value for row_values in part for value in row_values],
                )
    for row in rows:
        row._state.adding = False
        row._state.db = conn.alias


# Field classes whose `get_db_prep_save` gives back a value of these exact types unchanged,
# on SQLite and PostgreSQL alike (`to_python`, `int()` or `bool()` of it is itself, and no
# backend adapts it): for them a row's value is sent as it is, not through the four calls
# of the field's conversion, which were most of a multi-row INSERT's CPU. Exact classes only:
# a subclass may convert (its own `get_prep_value`), and so goes through the ORM's path.
_STR, _INT = (str,), (int,)
_PLAIN: dict[type[Field[Any, Any]], tuple[type, ...]] = {
    models.CharField: _STR,
    models.TextField: _STR,
    models.SlugField: _STR,
    models.IntegerField: _INT,
    models.BigIntegerField: _INT,
    models.SmallIntegerField: _INT,
    models.PositiveIntegerField: _INT,
    models.PositiveBigIntegerField: _INT,
    models.PositiveSmallIntegerField: _INT,
    models.AutoField: _INT,
    models.BigAutoField: _INT,
    models.SmallAutoField: _INT,
    models.BooleanField: (bool,),
}
# Of those, the ones whose conversion of None is None (a non-null BooleanField refuses it).
_NONE_KEPT = frozenset(_PLAIN) - {models.BooleanField}


def _sent_as_is(
    field: Field[Any, Any], conn: BaseDatabaseWrapper
) -> tuple[tuple[type, ...], bool] | None:
    """(the value types sent unchanged, whether None is) for `field` on `conn`'s database,
    or None when its values always go through `get_db_prep_save`."""
    if isinstance(field, models.ForeignKey):
        # A foreign key sends what its target field would send.
        if type(field).get_db_prep_save is not models.ForeignKey.get_db_prep_save:
            return None
        return _sent_as_is(field.target_field, conn)
    types = _PLAIN.get(type(field))
    if types is None:
        return None
    if types is _INT and (
        type(conn.ops).adapt_integerfield_value
        is not BaseDatabaseOperations.adapt_integerfield_value
    ):
        # PostgreSQL (psycopg 3) sends integers typed by their column (Int2, Int4, Int8).
        return None
    return types, type(field) in _NONE_KEPT


@dataclass(frozen=True)
class _Column:
    field: Field[Any, Any]
    attname: str
    own_pre_save: bool  # the field computes its value (auto_now_add...): ask it
    as_is: tuple[type, ...]
    none_as_is: bool


@dataclass(frozen=True)
class InsertPlan:
    """What an INSERT of `model`'s rows needs, worked out once per model and database: the
    table, the quoted columns, one row's placeholders, and how each value is prepared."""

    table: str
    columns: str
    one: str
    fields: tuple[Field[Any, Any], ...]
    steps: tuple[_Column, ...]
    # Rows per statement by number of rows: the backend's answer depends on the fields and
    # on how many rows there are, nothing else (SQLite: its parameter limit over the
    # fields; PostgreSQL: all of them), and working it out cost a round as much as a row.
    _per_statement: dict[int, int] = dataclass_field(default_factory=dict, compare=False)

    def per_statement(self, conn: BaseDatabaseWrapper, rows: Sequence[Model]) -> int:
        """How many of `rows` one INSERT may carry on `conn`'s database."""
        known = self._per_statement.get(len(rows))
        if known is None:
            known = max(1, conn.ops.bulk_batch_size(list(self.fields), rows))
            self._per_statement[len(rows)] = known
        return known

    def values(self, row: Model, conn: BaseDatabaseWrapper) -> list[Any]:
        """`row`'s values as `row.save(force_insert=True)` would send them: each field's
        `pre_save` and `get_db_prep_save`, skipped only where they give the value back."""
        values: list[Any] = []
        for step in self.steps:
            field = step.field
            value = field.pre_save(row, True) if step.own_pre_save else getattr(row, step.attname)
            if type(value) in step.as_is or (value is None and step.none_as_is):
                values.append(value)
            else:
                values.append(field.get_db_prep_save(value, conn))
        return values


_PLANS: dict[tuple[str, str, type[Model], bool], InsertPlan] = {}


def insert_plan(model: type[Model], conn: BaseDatabaseWrapper, *, without_pk: bool) -> InsertPlan:
    """The cached `InsertPlan` of `model` on `conn`'s database (`without_pk`: the automatic
    primary key is left to the database)."""
    key = (conn.alias, conn.vendor, model, without_pk)
    plan = _PLANS.get(key)
    if plan is None:
        meta = model._meta
        fields = tuple(f for f in meta.concrete_fields if not (without_pk and f is meta.pk))
        steps = []
        for f in fields:
            as_is = _sent_as_is(f, conn)
            steps.append(
                _Column(
                    field=f,
                    attname=str(f.attname),
                    own_pre_save=type(f).pre_save is not Field.pre_save,
                    as_is=as_is[0] if as_is else (),
                    none_as_is=bool(as_is and as_is[1]),
                )
            )
        plan = _PLANS[key] = InsertPlan(
            table=table(model, conn),
            columns=", ".join(conn.ops.quote_name(str(f.column)) for f in fields),
            one="(" + ", ".join(["%s"] * len(fields)) + ")",
            fields=fields,
            steps=tuple(steps),
        )
    return plan
