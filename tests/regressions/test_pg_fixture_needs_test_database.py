"""The PostgreSQL test fixtures assumed a `test` database existed; on a fresh server every
PostgreSQL test failed. They now fall back to the `postgres` maintenance database."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.conftest import PG_ADMIN_URL, pg_admin_engine


@pytest.mark.postgres
def test_admin_connection_without_the_configured_database() -> None:
    missing = sa.make_url(PG_ADMIN_URL).set(database=f"doorstep_missing_{uuid.uuid4().hex[:8]}")
    try:
        admin = pg_admin_engine(missing.render_as_string(hide_password=False))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable: {exc.__class__.__name__}")
    try:
        assert admin.url.database == "postgres"
        name = f"doorstep_probe_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:  # it can do what the fixture needs: create and drop a database
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            conn.execute(sa.text(f'DROP DATABASE "{name}"'))
    finally:
        admin.dispose()
