"""Who is asking, and with which second factor: the signed-in user and their OTP device in
one statement.

Django's AuthenticationMiddleware and django-otp's OTPMiddleware each build an ORM query on
every request (the user, then the device the session names): ~2 ms of CPU on a document
read whose database work is a tenth of that. `VerifiedUserMiddleware` (accounts.middleware)
gets both rows from one statement and then applies, step by step, the rules of
`django.contrib.auth.get_user` (the backend named by the session, an active account, the
session's password hash, fallback secrets) and of django-otp (the device bound to this user,
confirmed; otherwise forgotten from the session). Anything off the common path — another
backend, a device class we do not know, an id of the wrong shape — goes through the
libraries' own code unchanged. `test_verified_user_differential` runs every case through
both stacks and requires the same user, device, verification and session.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.apps import apps
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import AnonymousUser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field, Model
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.models import Device

from vigie.accounts.models import User
from vigie.lib import rawsql

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


class _UserAndDevice:
    """SELECT user LEFT JOIN one device class, by primary keys; built once per class."""

    _cache: ClassVar[dict[tuple[str, type[Model] | None], _UserAndDevice]] = {}

    def __init__(self, alias: str, device_model: type[Model] | None) -> None:
        self.alias = alias
        conn = connections[alias]
        quote = conn.ops.quote_name
        self.device_model = device_model
        self.user_fields: list[Field[Any, Any]] = list(User._meta.concrete_fields)
        self.user_readers = [rawsql.Reader(f, conn) for f in self.user_fields]
        columns = [f"u.{quote(f.column)}" for f in self.user_fields]
        user_pk = quote(User._meta.pk.column)
        if device_model is None:
            self.device_fields: list[Field[Any, Any]] = []
            # Names from the models' metadata; values are parameters.
            self.sql = (
                f"SELECT {', '.join(columns)} FROM {rawsql.table(User, conn)} u"  # noqa: S608
                f" WHERE u.{user_pk} = %s"
            )
        else:
            self.device_fields = list(device_model._meta.concrete_fields)
            columns += [f"d.{quote(f.column)}" for f in self.device_fields]
            self.sql = (
                f"SELECT {', '.join(columns)} FROM {rawsql.table(User, conn)} u"  # noqa: S608
                f" LEFT JOIN {rawsql.table(device_model, conn)} d"
                f" ON d.{quote(device_model._meta.pk.column)} = %s"
                f" WHERE u.{user_pk} = %s"
            )
        self.device_readers = [rawsql.Reader(f, conn) for f in self.device_fields]

    @classmethod
    def get(cls, device_model: type[Model] | None) -> _UserAndDevice:
        key = (DEFAULT_DB_ALIAS, device_model)
        found = cls._cache.get(key)
        if found is None:
            found = cls._cache[key] = cls(DEFAULT_DB_ALIAS, device_model)
        return found

    def fetch(self, user_id: Any, device_id: int | None) -> tuple[User | None, Any]:
        conn = connections[self.alias]
        params = [user_id] if self.device_model is None else [device_id, user_id]
        with conn.cursor() as cursor:
            cursor.execute(self.sql, params)
            row = cursor.fetchone()
        if row is None:
            return None, None
        split = len(self.user_fields)
        user = rawsql.instance(User, self.user_fields, self.user_readers, row[:split], conn)
        device = None
        # The device's primary key is never NULL in a row that exists: NULL is "no such row".
        if self.device_model is not None and row[split] is not None:
            device = rawsql.instance(
                self.device_model, self.device_fields, self.device_readers, row[split:], conn
            )
        return user, device


def _device_class(persistent_id: str) -> tuple[type[Model], int] | None:
    """The Device class and pk a session's device id names, as django-otp parses it; None
    for anything it would not find (it answers None for those too)."""
    try:
        label, pk = persistent_id.rsplit("/", 1)
        app_label, model_name = label.split(".")
        model = apps.get_model(app_label, model_name)
        number = int(pk)
    except (ValueError, LookupError):
        return None
    if not issubclass(model, Device):
        return None
    return model, number


def verified_user(request: HttpRequest, finalize_device: Any, init_user: Any) -> Any:
    """request.user as AuthenticationMiddleware then OTPMiddleware would leave it."""
    session = request.session
    try:
        user_id = User._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        anonymous = AnonymousUser()
        init_user(anonymous)
        return anonymous
    if backend_path != MODEL_BACKEND or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None  # the caller takes the libraries' own path
    persistent_id = session.get(DEVICE_ID_SESSION_KEY)
    target = _device_class(persistent_id) if persistent_id else None
    if persistent_id and target is None:
        # A legacy or foreign id: django-otp's own normalisation and lookup decide.
        return None
    model, device_pk = target if target else (None, None)
    found, device = _UserAndDevice.get(model).fetch(user_id, device_pk)
    # ModelBackend.get_user: an inactive account is no user.
    user: Any = found if found is not None and found.is_active else None
    if user is not None:
        session_hash = session.get(HASH_SESSION_KEY)
        verified = bool(session_hash) and constant_time_compare(
            str(session_hash), user.get_session_auth_hash()
        )
        if not verified:
            if session_hash and any(
                constant_time_compare(session_hash, fallback)
                for fallback in user.get_session_auth_fallback_hash()
            ):
                session.cycle_key()
                session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            else:
                session.flush()
                user = None
    if user is None:
        user = AnonymousUser()
    init_user(user)
    if user.is_authenticated:
        user.otp_device = finalize_device(request, user, device)
    return user


def fallback_user(request: HttpRequest, verify: Any) -> Any:
    """The libraries' own path, for what `verified_user` leaves to them."""
    return verify(request, auth.get_user(request))
