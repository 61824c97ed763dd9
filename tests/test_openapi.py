"""/openapi.json is kept true: schemathesis sends what the document allows (and
what it does not) to the app on the real database, and checks every answer:
no 500, and nothing the document does not describe. The owner's log is sent
an operator's token, so that its filters and pages are checked, not only its 401."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from app import operators


def test_the_api_answers_as_its_openapi_document_says(app, sessions):
    with sessions() as db:
        operators.add(db, "openapi-operator", "a long enough password")
        token = operators.issue_token(db, "openapi-operator")
        db.commit()
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = ({"Authorization": f"Bearer {token}"}
                   if operation.path.startswith("/api/v1/") else None)

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_documented(case):
            case.call_and_validate(headers=headers)

        answers_as_documented()
        checked.append(operation.label)
    assert len(checked) == 6, checked
    assert "GET /api/v1/rtb_inbounds.json" in checked
