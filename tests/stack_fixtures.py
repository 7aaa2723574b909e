"""Shared fixtures for every test folder (loaded with `-p stack_fixtures`): a stand-in for the Istio 1.6 chart cache, since the release archive cannot be fetched offline, and whole-program runs per stack."""

import os

import pytest

from harness.stacks import CURRENT_ISTIO
from tools import istio_charts
from tools.stack_run import stand_in_chart_cache


@pytest.fixture(autouse=True, scope="session")
def istio_chart_cache(tmp_path_factory):
    root = stand_in_chart_cache(tmp_path_factory.mktemp("istio-charts"))
    previous = os.environ.get(istio_charts.CACHE_ENV)
    os.environ[istio_charts.CACHE_ENV] = str(root)
    yield root
    if previous is None:
        os.environ.pop(istio_charts.CACHE_ENV, None)
    else:
        os.environ[istio_charts.CACHE_ENV] = previous


# Whole-program runs shared by the tests that only read them (each run is fresh and independent).


def _run(stack, overrides=None):
    from tools.stack_run import run_stack

    run = run_stack(stack, overrides)
    assert run.error is None, f"{stack} failed: {run.error}"
    return run


@pytest.fixture(scope="session")
def dev(istio_chart_cache):
    return _run("dev")


@pytest.fixture(scope="session")
def prod(istio_chart_cache):
    return _run("prod")


@pytest.fixture(scope="session")
def current(istio_chart_cache):
    """The prod stack on current Istio (1.30) and a Kubernetes it supports."""
    return _run("prod", CURRENT_ISTIO)


@pytest.fixture(scope="session", params=["dev", "prod", "current"])
def any_stack(request):
    return request.getfixturevalue(request.param)
