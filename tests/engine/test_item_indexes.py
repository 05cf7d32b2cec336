"""The items tables' indexes on the job column: the batch index (job, status, id) serves
every lookup by job, so the column has no index of its own, which every write of an item
(two per email) would also have to update."""

import pytest
from django.db import connection

from emails.models import BulkEmailJobItem
from wallet.models import BulkWalletApiJobItem

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", [BulkEmailJobItem, BulkWalletApiJobItem])
def test_the_job_column_is_indexed_once_by_the_batch_index(model):
    column = model._meta.get_field("job").column
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    indexes = [
        details["columns"]
        for details in constraints.values()
        if details["index"] and not details["primary_key"]
    ]
    assert [column, "status", "id"] in indexes
    assert [column] not in indexes
