"""Upgrades: the previous release keeps working on the schema of the next one.

During an upgrade `manage.py migrate` runs while the previous release still serves pages
and runs jobs (docs/operations.md, "Upgrading"). Its ORM inserts rows without the columns
it does not know, so every NOT NULL column added to an existing table needs a default
in the database (db_default), not only in Python: one without it made the old web
process fail to create email jobs until it was restarted. Columns created with their
table need none: a release that knows the table knows them.
"""

import pytest
from django.apps import apps
from django.db import connection, migrations
from django.db.migrations.loader import MigrationLoader
from django.db.models import NOT_PROVIDED
from django.utils import timezone

from bulkjobs.models import ProcessorRun
from cards.models import Company
from emails.models import BulkEmailJob, BulkEmailJobItem, EmailSuppression
from tests.conftest import make_cards, make_email_job
from wallet.models import (
    AppleDeviceRegistration,
    BulkWalletApiJob,
    BulkWalletApiJobItem,
    CardWalletState,
)

OUR_APPS = ("cards", "bulkjobs", "emails", "wallet")

#: "app_label.Model.field" of NOT NULL columns added to an existing table that may go
#: without a database default, each with the reason why no earlier release can insert a
#: row without it. Empty: give the column a db_default (the same as its default) instead.
ALLOWED_WITHOUT_DB_DEFAULT = set()


def columns_created_with_their_table():
    """{(app_label, model_name): the field names of the model's CreateModel}.

    Read from the migration files, in the order they apply, the first CreateModel of a
    model winning. (A squashed migration creates a table with the columns of the
    migrations it replaces; by then no release older than those is running.)
    """
    loader = MigrationLoader(None, ignore_no_migrations=True)
    created = {}
    for app in OUR_APPS:
        for leaf in loader.graph.leaf_nodes(app):
            for key in loader.graph.forwards_plan(leaf):
                if key[0] not in OUR_APPS:
                    continue
                for operation in loader.graph.nodes[key].operations:
                    if isinstance(operation, migrations.CreateModel):
                        created.setdefault(
                            (key[0], operation.name_lower),
                            {name for name, _field in operation.fields},
                        )
    return created


def our_columns():
    """(model, field) of every concrete, stored column of our apps' models."""
    for app in OUR_APPS:
        for model in apps.get_app_config(app).get_models():
            for field in model._meta.concrete_fields:
                if not field.primary_key and not field.generated:
                    yield model, field


def added_columns():
    """(model, field) of the columns added to a table after it was created."""
    created = columns_created_with_their_table()
    for model, field in our_columns():
        if field.name not in created[model._meta.app_label, model._meta.model_name]:
            yield model, field


def label(model, field):
    return f"{model._meta.label}.{field.name}"


def test_every_not_null_column_without_a_database_default_is_an_allowed_exception():
    created = columns_created_with_their_table()
    without = {
        label(model, field)
        for model, field in our_columns()
        if field.null is False and field.db_default is NOT_PROVIDED
    }
    allowed = {
        label(model, field)
        for model, field in our_columns()
        if field.name in created[model._meta.app_label, model._meta.model_name]
    } | ALLOWED_WITHOUT_DB_DEFAULT
    assert without - allowed == set(), (
        "NOT NULL columns added to an existing table need a database default, or the "
        "previous release fails to insert rows after `migrate`: add db_default=<the same "
        "value as default> to these fields (a callable default: give it in every INSERT "
        "of the previous release, then list it in ALLOWED_WITHOUT_DB_DEFAULT with why)"
    )


def test_the_check_knows_the_columns_added_so_far():
    # The columns added to existing tables before database defaults were the rule (the
    # ones that broke the previous release), so that the check above is not vacuous.
    assert {label(model, field) for model, field in added_columns() if not field.null} >= {
        "cards.Company.language",
        "cards.Company.reply_to_address",
        "emails.BulkEmailJobItem.attempt_log",
        "emails.BulkEmailJobItem.attempts_before_retry",
        "wallet.BulkWalletApiJob.automatic",
        "wallet.BulkWalletApiJobItem.attempt_log",
        "wallet.CardWalletState.apple_pass_hash",
        "wallet.AppleDeviceRegistration.refused_push_token",
    }


def test_database_defaults_are_the_python_defaults():
    # The ORM inserts the Python default, an older release's INSERT gets the database's:
    # a row must not depend on which release wrote it.
    for model, field in our_columns():
        if field.db_default is not NOT_PROVIDED:
            assert field.has_default(), label(model, field)
            value = getattr(field.db_default, "value", field.db_default)  # Value(...) or plain
            assert value == field.get_default(), label(model, field)


# One row of each model that gained columns, made by the ORM.
def _company(company, card):
    return Company.objects.create(name="Old Release Ltd", slug="old-release")


def _email_job(company, card):
    return make_email_job(company, ["ann@example.com"])


def _email_item(company, card):
    return make_email_job(company, ["ann@example.com"]).items.get()


def _wallet_job(company, card):
    return BulkWalletApiJob.objects.create(company=company)


def _wallet_item(company, card):
    return BulkWalletApiJobItem.objects.create(job=_wallet_job(company, card), card=card)


def _wallet_state(company, card):
    return CardWalletState.objects.create(card=card)


def _registration(company, card):
    return AppleDeviceRegistration.objects.create(
        device_library_id="device-1", push_token="token-1", state=_wallet_state(company, card)
    )


def _suppression(company, card):
    return EmailSuppression.objects.create(company=company, email="ann@example.com")


def _processor_run(company, card):
    return ProcessorRun.objects.create(kind="email", last_started_at=timezone.now())


ROWS = {
    ProcessorRun: _processor_run,
    Company: _company,
    BulkEmailJob: _email_job,
    BulkEmailJobItem: _email_item,
    BulkWalletApiJob: _wallet_job,
    BulkWalletApiJobItem: _wallet_item,
    CardWalletState: _wallet_state,
    AppleDeviceRegistration: _registration,
    EmailSuppression: _suppression,
}


@pytest.mark.django_db
@pytest.mark.parametrize("model", ROWS, ids=lambda model: model._meta.label)
def test_an_insert_without_the_added_columns_succeeds(model, company):
    """The previous release's INSERT: a row as the ORM makes it, without the columns
    added since the table was created, given to the database as plain SQL."""
    created = columns_created_with_their_table()[model._meta.app_label, model._meta.model_name]
    added = [field for m, field in added_columns() if m is model and not field.null]
    assert added
    card = make_cards(company, 1)[0]
    row = ROWS[model](company, card)
    old = [
        field
        for field in model._meta.concrete_fields
        if field.name in created and not field.primary_key and not field.generated
    ]
    values = [field.get_db_prep_save(getattr(row, field.attname), connection) for field in old]
    model.objects.filter(pk=row.pk).delete()  # its unique values are free again
    existing = list(model.objects.values_list("pk", flat=True))
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608
            f"({', '.join(quote(field.column) for field in old)}) "
            f"VALUES ({', '.join(['%s'] * len(old))})",
            values,
        )
    inserted = model.objects.exclude(pk__in=existing).get()
    for field in added:
        assert getattr(inserted, field.attname) == field.get_default(), field.name


def test_every_model_that_gained_columns_is_inserted_above():
    gained = {model for model, field in added_columns() if not field.null}
    assert gained <= set(ROWS), "add a row of it to ROWS"
