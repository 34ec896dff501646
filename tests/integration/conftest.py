from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.system import System

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration is an integration test: ``-m "not integration"``
    leaves the fast tier."""
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A fresh broker and the three workers, shared by the tests of one module."""
    sys_ = System(tmp_path_factory.mktemp("signupflow"))
    try:
        sys_.start_broker()
        sys_.start()
        yield sys_
    finally:
        sys_.shutdown()


@pytest.fixture
def tmp_system(tmp_path: Path) -> Iterator[System]:
    """A broker with no workers yet, for tests that start and kill workers themselves."""
    sys_ = System(tmp_path)
    try:
        sys_.start_broker()
        yield sys_
    finally:
        sys_.shutdown()
