"""/openapi.json is kept true: schemathesis sends what the document allows (and
what it does not) to the app on the real database, and checks every answer:
no 500, and nothing the document does not describe."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings


def test_the_api_answers_as_its_openapi_document_says(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_documented(case):
            case.call_and_validate()

        answers_as_documented()
        checked.append(operation.label)
    assert len(checked) == 5, checked
