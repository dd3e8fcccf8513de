"""The hypothesis settings of the hostile-input tests."""

from __future__ import annotations

from hypothesis import HealthCheck
from hypothesis import settings

# Function-scoped fixtures are shared by the examples on purpose: each
# example resets what it changed.
hostile = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
