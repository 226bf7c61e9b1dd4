"""schemathesis hooks for padel-bff's GraphQL fuzz run (tests/api/fuzz.rs).

Loaded with SCHEMATHESIS_HOOKS=hooks and this folder on PYTHONPATH.
"""
import datetime
import os

import schemathesis
from hypothesis import strategies as st
from schemathesis.graphql import nodes
from schemathesis.graphql.checks import GraphQLClientError, GraphQLServerError

# LocalTime ("HH:MM") is the only custom *input* scalar schemathesis has no strategy for.
# (Date and DateTime are built in; Decimal is output-only.) Without this, createReservation is
# reported as an error ("Unknown GraphQL Scalar") and the run exits 1.
schemathesis.graphql.scalar(
    "LocalTime",
    st.one_of(
        # mostly quarter hours (bookings must start and end on 15-minute boundaries) ...
        st.builds(lambda h, q: f"{h:02}:{q * 15:02}", st.integers(0, 23), st.integers(0, 3)),
        # ... and any minute
        st.times().map(lambda t: t.strftime("%H:%M")),
    ).map(nodes.String),
)

# Date: the built-in strategy draws from years 1-9999, so createReservation almost always hits
# "date is in the past". Mix in a fixed window far in the future (deterministic, always bookable).
schemathesis.graphql.scalar(
    "Date",
    st.one_of(
        st.dates(min_value=datetime.date(2099, 6, 1), max_value=datetime.date(2099, 6, 14)),
        st.dates(),
    ).map(str).map(nodes.String),
)

# Documented answers to schema-valid requests that are not defects: ids that do not parse / do
# not exist / are not visible, roles that forbid the operation, overlapping bookings, values the
# SDL cannot express (slotMinutes outside 15-240 ...), and the depth/complexity limits.
# schemathesis otherwise reports NOT_FOUND/FORBIDDEN/CONFLICT with a `path` as ST113
# "GraphQL server error" (check not_a_server_error) and BAD_USER_INPUT / QUERY_TOO_COMPLEX as
# ST206 "GraphQL client error" (check positive_data_acceptance).
DOMAIN_CODES = frozenset({"NOT_FOUND", "FORBIDDEN", "CONFLICT", "BAD_USER_INPUT", "QUERY_TOO_COMPLEX"})


def _codes(errors):
    return {(e.get("extensions") or {}).get("code") if isinstance(e, dict) else None for e in (errors or [])}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Drop a GraphQL error failure only when every error in it carries a documented domain code."""
    if os.environ.get("FUZZ_NO_FILTER"):
        return True
    if isinstance(failure, (GraphQLServerError, GraphQLClientError)):
        codes = _codes(failure.errors)
        if codes and codes <= DOMAIN_CODES:
            return False
    return True
