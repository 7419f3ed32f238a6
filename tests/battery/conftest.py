# Fixtures of the reliability battery.

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from parley_chat.server.chat_server import ChatServer
from tests.battery.helpers import Battery


@pytest.fixture
def battery(
    make_server: Callable[..., ChatServer], ca_file: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Battery]:
    """Clients for one case, and the checks every case ends with (Battery.finish).

    Depends on make_server so its clients close before the servers stop.
    """
    caplog.set_level(logging.INFO, logger="parley")
    kit = Battery(ca_file, caplog)
    yield kit
    kit.close_all()
