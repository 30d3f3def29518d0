"""GP access: the issuer security domain details of a batch and what GET STATUS shows.

The engine opens an SCP03 session itself only to settle an attempt a crash
left open (:mod:`cardlab.personalizer.engine.reconcile`): it needs the ISD
AID, the KMC name and its diversification, the key version and the target
life cycle of the batch's profile (:func:`gp_access`), and reads the card's
and the applications' life cycles with GET STATUS (GP §11.4).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardlab.personalizer.engine.channel import SW_OK, Transmit, status_word
from cardlab.personalizer.engine.errors import CardError
from cardlab.personalizer.engine.identity import read_identity

if TYPE_CHECKING:
    from cardlab.personalizer.keys import KeyStore

DEFAULT_ISD_AID = bytes.fromhex("A000000151000000")
#: application life cycle PERSONALIZED (GP §5.3.1 table 11-4)
APP_PERSONALIZED = 0x0F
CARD_LIFE = {"OP_READY": 0x01, "INITIALIZED": 0x07, "SECURED": 0x0F, "CARD_LOCKED": 0x7F, "TERMINATED": 0xFF}


@dataclass(frozen=True)
class GpAccess:
    """What the engine needs to open SCP03 itself (reconciliation)."""

    isd_aid: bytes = DEFAULT_ISD_AID
    kmc: str = "KMC"
    scheme: str = "KDF3"
    key_version: int = 0x30
    target_life_cycle: str | None = "SECURED"


def gp_access(batch: Path) -> GpAccess:
    """The card details of the batch's issuer profile (``card:`` section)."""
    path = batch / "profile.yaml"
    if not path.exists():
        return GpAccess()
    try:
        from cardlab.personalizer.profile import load_profile

        card = load_profile(path).card
        return GpAccess(card.isd_aid, card.kmc, card.diversification.upper(), card.key_version,
                        card.target_life_cycle.upper())
    except Exception:  # noqa: BLE001 - another profile kind (e.g. the badge): read its card section
        import yaml

        doc = yaml.safe_load(path.read_text()) or {}
        card_doc = doc.get("card") or {} if isinstance(doc, dict) else {}
        if not isinstance(card_doc, dict):
            return GpAccess()
        kv = card_doc.get("key_version", 0x30)
        target = card_doc.get("target_life_cycle")
        return GpAccess(
            bytes.fromhex(str(card_doc.get("isd_aid", DEFAULT_ISD_AID.hex()))),
            str(card_doc.get("kmc", "KMC")),
            str(card_doc.get("diversification", "kdf3")).upper(),
            int(kv, 16) if isinstance(kv, str) else int(kv),
            str(target).upper() if target else None,
        )


@dataclass(frozen=True)
class CardView:
    """A card's GP state as GET STATUS shows it."""

    cin: str
    life_cycle: int
    apps: dict[bytes, int]  # AID → life cycle, for the AIDs asked about


def open_session(transmit: Transmit, gp: GpAccess, keystore: KeyStore, level: int = 0x01) -> Any:
    """SCP03 with the card's keys diversified from the KMC by the KDD it reports."""
    from cardlab.cardspec.scp03 import HostSession, StaticKeys

    resp = transmit(b"\x80\xCA\x00\xCF\x00")
    if status_word(resp) == SW_OK and len(resp) >= 12:
        kdd = resp[-12:-2]
    else:  # no GET DATA CF: INITIALIZE UPDATE tells the KDD too
        resp = transmit(bytes((0x80, 0x50, gp.key_version, 0x00, 0x08)) + os.urandom(8) + b"\x00")
        if status_word(resp) != SW_OK or len(resp) < 12:
            raise CardError(f"INITIALIZE UPDATE: SW {status_word(resp):04X}")
        kdd = resp[:10]
    keys = keystore.diversify_card_keys(gp.kmc, gp.scheme, kdd)
    hs = HostSession(transmit, StaticKeys(keys.enc, keys.mac, keys.dek, gp.key_version))
    hs.open(level)
    return hs


def inspect_card(
    transmit: Transmit, gp: GpAccess, keystore: KeyStore, aids: Sequence[bytes]
) -> tuple[CardView, Any]:
    """Read the card's life cycle and the life cycles of ``aids`` (GET STATUS
    P1 80 and 40, TLV format, GP §11.4) inside an SCP03 session."""
    ident = read_identity(transmit, gp.isd_aid)
    hs = open_session(transmit, gp, keystore)
    return session_view(hs.send, gp, aids, ident.cin), hs


def session_cin(send: Transmit) -> str:
    """The CIN (GET DATA 45, GP §11.3) read inside an open session, hex ('' if the card has none)."""
    from cardlab.cardspec import tlv

    resp = send(b"\x80\xCA\x00\x45\x00")
    if status_word(resp) != SW_OK:
        return ""
    found = tlv.find(resp[:-2], 0x45)
    return (found.value if found is not None else resp[:-2]).hex().upper()


def session_view(send: Transmit, gp: GpAccess, aids: Sequence[bytes], cin: str) -> CardView:
    """The card's life cycle and those of ``aids`` by GET STATUS (P1 80 and 40, TLV format,
    GP §11.4) over ``send``, a session's."""
    from cardlab.cardspec import tlv

    def status(p1: int, aid: bytes) -> int | None:
        resp = send(bytes((0x80, 0xF2, p1, 0x02, 2 + len(aid), 0x4F, len(aid))) + aid + b"\x00")
        if status_word(resp) == 0x6A88:
            return None
        if status_word(resp) not in (SW_OK, 0x6310):
            raise CardError(f"GET STATUS {p1:02X}: SW {status_word(resp):04X}")
        for item in tlv.parse(resp[:-2]):
            if item.tag == 0xE3:
                inner = tlv.to_dict(item.value)
                if inner.get(0x4F) == aid and 0x9F70 in inner:
                    return inner[0x9F70][0]
        return None

    life = status(0x80, gp.isd_aid)
    if life is None:
        raise CardError("GET STATUS: the card does not list its ISD")
    apps = {aid: lc for aid in aids if (lc := status(0x40, aid)) is not None}
    return CardView(cin, life, apps)
