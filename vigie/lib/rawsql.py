"""Hot-path statements written once from a model's metadata, read as the ORM would read them.

For the few statements that run on every document read (the door's lookup, the audit
append), building an ORM query cost several times what the database spends answering it.
These helpers keep what makes the ORM safe to leave: table and column names come from the
models' `_meta` (quoted by the backend), every value is a parameter, and a column is
converted on its way in and out exactly as the ORM's compiler converts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

Converter = Callable[[Any, Any, Any], Any]


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
