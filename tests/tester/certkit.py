"""TEST-ONLY helpers for the certification tests: prepared sample cards
(the personalizer's data preparation), put on emulated cards, plus the
tester's own view of the same source files."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "personalizer"))
sys.path.insert(0, str(ROOT / "tests" / "emv"))

import cardmaker  # type: ignore[import-not-found]  # noqa: E402
import prepkit  # type: ignore[import-not-found]  # noqa: E402
from cardlab.cardspec.scp03 import HostSession, pad80  # noqa: E402
from cardlab.emulator import Card  # noqa: E402
from cardlab.personalizer.batch import CardPersoData, iter_cards  # noqa: E402
from cardlab.personalizer.prepare import prepare  # noqa: E402

from cardlab.tester import sources  # noqa: E402
from cardlab.tester.channel import RecordingChannel  # noqa: E402

__all__ = ["cardmaker", "prepkit", "sources", "Prepared", "prepare_sample", "card_from_dgis", "channel", "sources_for", "TODAY", "SAMPLE", "PROFILES"]

TODAY = date(2026, 1, 15)
SAMPLE = prepkit.VECTORS / "records" / "sample.csv"
PROFILES = {p.stem: p for p in prepkit.PROFILES}


@dataclass
class Prepared:
    profile_path: Path
    batch: Path
    keys_path: Path
    cards: list[CardPersoData]
    ks: Any

    def clear(self, n: int = 0) -> list[tuple[bytes, list[tuple[int, bytes]]]]:
        """(AID, clear DGIs) of each application of prepared card ``n``."""
        return [(a.aid, prepkit.clear_dgis(self.ks, a)) for a in self.cards[n].apps]


def prepare_sample(name: str, out: Path) -> Prepared:
    ks = prepkit.make_keystore()
    keys = out / "keys.json"
    ks.save(keys)
    prepare(PROFILES[name], SAMPLE, ks, out / "batch", today=TODAY)
    return Prepared(PROFILES[name], out / "batch", keys, list(iter_cards(out / "batch")), ks)


def blank_card(aids: list[bytes], serial: int = 0x1234) -> Card:
    """A blank card whose ISD keys are diversified from the KMC that the profile holding ``aids``
    names (the sample key store's), by that profile's scheme and key version, as card stock is:
    the tester's GP checks (LIFE-CARD-002, on by default) open SCP03 with them."""
    from cardlab.cardspec.keys import diversify
    from cardlab.tester.certify.life import GpCardProfile

    for path in PROFILES.values():
        gp = GpCardProfile.from_file(path)
        prof = sources.load_profile(path)
        if any(a.aid in aids for a in prof.applications) and gp.kmc:
            kmc = prepkit.make_keystore().clear_value(gp.kmc)
            kdd = bytes.fromhex("0102030405") + serial.to_bytes(5, "big")
            return Card.create(keys=diversify(gp.scheme.lower(), kmc, kdd), kdd=kdd, kvn=gp.key_version or 0x30,
                               **({"isd_aid": gp.isd_aid} if gp.isd_aid else {}))
    return Card.create()


def card_from_dgis(apps: list[tuple[bytes, list[tuple[int, bytes]]]], *, last_block: bool = True) -> Card:
    card = blank_card([aid for aid, _ in apps])
    for aid, dgis in apps:
        if last_block:
            cardmaker.personalize(card, dgis, aid)  # with the PSE and PPSE (DIR-002)
            continue
        hs = HostSession(card.transmit, cardmaker.card_keys(card))
        hs.open(0x33)
        klass = cardmaker.emv_classes()["emv"]
        cardmaker._ok(cardmaker._install(hs, klass, aid), "INSTALL")
        cardmaker._ok(hs.send(cardmaker._apdu("80E62000", b"\x00\x00" + cardmaker._lv(aid) + b"\x00\x00\x00")), "INSTALL perso")
        for i, (secret, block) in enumerate(cardmaker.store_blocks(dgis)):
            p1 = 0x08 | (0x60 if secret else 0x00)
            body = hs.dek_encrypt(pad80(block)) if secret else block
            cardmaker._ok(hs.send(cardmaker._apdu(f"80E2{p1:02X}{i:02X}", body)), "STORE DATA")
    if last_block:
        secure(card)
    return card


def secure(card: Card) -> None:
    """The card life cycle the profiles target after perso (SECURED, as the perso engine leaves
    it): SET STATUS P1=80 P2=0F over SCP03 (GP Card Spec 2.3 §11.10)."""
    hs = HostSession(card.transmit, cardmaker.card_keys(card))
    hs.open(0x33)
    cardmaker._ok(hs.send(bytes.fromhex("80F0800F")), "SET STATUS SECURED")


def channel(card: Card) -> RecordingChannel:
    return RecordingChannel(card.transmit)


def sources_for(p: Prepared, n: int = 0) -> tuple[sources.IssuerProfile, sources.Record, sources.KeyStore]:
    return (
        sources.load_profile(p.profile_path),
        sources.load_record(SAMPLE, p.cards[n].record_index),
        sources.load_keystore(p.keys_path),
    )


Mutator = Callable[[list[tuple[bytes, list[tuple[int, bytes]]]]], None]
