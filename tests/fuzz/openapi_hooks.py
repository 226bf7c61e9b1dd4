"""schemathesis hooks for padel-bff's OpenAPI run (tests/api/fuzz.rs).

Loaded with SCHEMATHESIS_HOOKS=openapi_hooks and this folder on PYTHONPATH.
"""
import datetime
import json
import os

import schemathesis
from hypothesis import strategies as st
from schemathesis.openapi.checks import RejectedPositiveData

# `format: date` draws from years 1-9999, and a date more than limits.date_days_back (730) before
# or limits.date_days_ahead (365) after the club's today is refused (documented in openapi.json,
# but a window relative to today has no JSON Schema). Mostly draw from inside it, so that answers
# with data are what gets checked against the response schemas.
_today = datetime.date.today()
schemathesis.openapi.format(
    "date",
    st.one_of(
        st.dates(min_value=_today - datetime.timedelta(days=700), max_value=_today + datetime.timedelta(days=300)),
        st.dates(),
    ).map(str),
)

# The two rules of the resolvers that a static schema cannot carry; both are documented on the
# parameters they concern. A 400 for anything else (a parameter the coercion refuses although
# the schema allows it) is still a failure.
DOMAIN_RULES = ("is outside the window of", "is not an active court of this club")


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Drop "valid data rejected" only when the refusal is one of the documented domain rules."""
    if os.environ.get("FUZZ_NO_FILTER"):
        return True
    if isinstance(failure, RejectedPositiveData) and response.status_code == 400:
        try:
            error = json.loads(response.content)["error"]
        except (ValueError, KeyError, TypeError):
            return True
        if error.get("code") == "BAD_USER_INPUT" and any(rule in error.get("message", "") for rule in DOMAIN_RULES):
            return False
    return True
