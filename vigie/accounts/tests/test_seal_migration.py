"""The data migration that seals seeds and hashes recovery codes already in a database."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from vigie.accounts.otp import recovery_code_hash, verify_code

BEFORE = [("accounts", "0002_sealed_seeds_and_invitations")]
AFTER = [("accounts", "0003_seal_second_factors")]


@pytest.mark.usefixtures("audit_committing")  # a transactional test that PostgreSQL can flush
def test_it_seals_the_seeds_and_hashes_the_codes_stored_in_clear() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state([*BEFORE, ("otp_static", "0003_add_timestamps")]).apps
    user = old.get_model("accounts", "User").objects.create(username="dr.old", role="doctor")
    seed = "3132333435363738393031323334353637383930"
    device = old.get_model("otp_totp", "TOTPDevice").objects.create(
        user_id=user.pk, name="authenticator", confirmed=True, key=seed
    )
    static = old.get_model("otp_static", "StaticDevice").objects.create(
        user_id=user.pk, name="recovery codes", confirmed=True
    )
    old.get_model("otp_static", "StaticToken").objects.create(device=static, token="abcd2345")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    from vigie.accounts.models import SealedTOTPDevice, User

    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM otp_totp_totpdevice WHERE id = %s", [device.pk])
        assert cursor.fetchone()[0] != seed
        cursor.execute("SELECT token FROM otp_static_statictoken")
        assert [row[0] for row in cursor.fetchall()] == [recovery_code_hash("abcd2345")]
    assert SealedTOTPDevice.objects.get(pk=device.pk).bin_key == bytes.fromhex(seed)
    assert verify_code(User.objects.get(pk=user.pk), "ABCD-2345") is True
