"""Shared pytest set-up: a reproducible hypothesis profile.

``derandomize=True`` makes every run draw the same examples (seeded from each test's name),
and ``database=None`` keeps runs from replaying examples saved by earlier runs: CI and a
developer's machine see exactly the same cases. ``deadline=None`` because a case runs 50+
optimizer steps, whose time varies with machine load.
"""

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the worst relative errors the comparisons measured in this run."""
    from tests.helpers import WORST

    if WORST:
        terminalreporter.section("worst relative errors measured (max|a-b| / max|b|, per tensor)")
        for key in sorted(WORST):
            terminalreporter.write_line(f"{key:<64} {WORST[key]:.3e}")


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: small models run fastest so, and a busy machine makes two
    threads much slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def native_helper_from_the_default_cache():
    """Look for the fused path's native helper once, before any test points the kernel cache
    elsewhere (a look from a temporary cache would start a build there)."""
    from optimlab import engine

    engine.native.helper()


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a running PostgreSQL server (tests/services.py): CI's, or one started for the session."""
    from tests import services

    with services.postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty PostgreSQL database for one test."""
    from tests import services

    with services.fresh_database(postgres_server) as url:
        yield url
