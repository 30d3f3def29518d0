"""Checks before the first card (issue 13): a run that cannot succeed stops with one line and
exit 2 before it claims a card, fails a record or spoils a blank.

* the key store holds the KMC the profile names and the transport key the batch was sealed
  under, with the check value the manifest recorded;
* a blank card of an emulated stock opens SCP03 with the profile's keys — tried on an in-memory
  copy of its image, so the stock is not touched (a card in a reader is checked by the first card
  itself: a card that refuses SCP03 before any data was written is set aside, not its record).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cardlab.personalizer.engine.errors import EngineError
from cardlab.personalizer.engine.gp import GpAccess, open_session
from cardlab.personalizer.keys import KeyStore
from cardlab.personalizer.stock import list_images

#: GP card life cycles of a blank card (GP Card Spec 2.3 §5.1.1): OP_READY, INITIALIZED
_BLANK = (0x01, 0x07)


def check_keys(keystore: KeyStore, keys_spec: str, manifest: Mapping[str, Any]) -> None:
    """The transport key is in ``keystore`` and is the one the batch was sealed under (its check value
    as the manifest recorded it); the keys the profile and script name: :func:`check_named_keys`."""
    sealed = manifest.get("transport_key") or {}
    name, kcv = str(sealed.get("name") or ""), str(sealed.get("kcv") or "").upper()
    if name:
        if name not in keystore:
            raise EngineError(f"key store {keys_spec}: no key {name!r}, the transport key the batch was sealed "
                              "under: its secrets cannot be opened")  # fmt: skip
        held = keystore.kcv(name).hex().upper()
        if kcv and held != kcv:
            raise EngineError(f"key store {keys_spec}: transport key {name!r} has check value {held}, the batch "
                              f"was sealed under {kcv}: another key of the same name")  # fmt: skip


def check_named_keys(batch: Path, script_path: Path, keystore: KeyStore, keys_spec: str) -> None:
    """Every key the batch's profile and script name is in the key store (the check ``perso prepare``
    makes, again: a run may be given another key store, or another ``--script``)."""
    from cardlab.personalizer.prepare.errors import PrepareError
    from cardlab.personalizer.prepare.keycheck import check_keys as check_profile_keys

    profile = batch / "profile.yaml"
    if not profile.exists():
        return
    try:
        check_profile_keys(profile, script_path if script_path.exists() else None, keystore)
    except PrepareError as exc:
        raise EngineError(f"key store {keys_spec}: {exc}") from None


def probe_stock(directory: Path, gp: GpAccess, keystore: KeyStore) -> None:
    """Open SCP03 on an in-memory copy of the first blank image of the stock: wrong stock (another
    KMC, another key version, another diversification) is found before any card is claimed."""
    from cardlab.emulator import Card
    from cardlab.emulator.image import ImageError

    for image in list_images(directory):
        try:
            card = Card.load(image)
        except (ImageError, OSError, ValueError):
            continue  # an unreadable image is the station's to set aside, with its reason
        if card.state.lifecycle not in _BLANK:
            continue
        card.power_on()
        try:
            open_session(card.transmit, gp, keystore)
        except Exception as exc:  # noqa: BLE001 - any refusal is the finding, named with its cause
            raise EngineError(
                f"stock {directory}: {image.name} does not open SCP03 with the profile's keys (KMC {gp.kmc!r}, "
                f"{gp.scheme}, key version {gp.key_version:02X}): {exc}") from None
        return
