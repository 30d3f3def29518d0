"""pytest fixtures for the pcscd + vpcd tests; the processes are managed by
:mod:`pcscd_helper`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pcscd_helper import CardServer, Pcscd, pcscd_unavailable


@pytest.fixture(scope="module")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    reason = pcscd_unavailable()
    if reason is not None:
        pytest.skip(reason)
    daemon = Pcscd(tmp_path_factory.mktemp("pcscd") / "pcscd.log")
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def card_image(tmp_path: Path) -> Path:
    from cardlab.emulator import Card

    path = tmp_path / "card.json"
    Card.create().save(path)
    return path


@pytest.fixture
def card_server(pcscd: Pcscd, card_image: Path, tmp_path: Path) -> Iterator[CardServer]:
    server = CardServer(card_image, tmp_path / "server.log")
    try:
        yield server
    finally:
        server.stop()
