"""Card stock: blank emulated cards as a manufacturer ships them.

A stock directory holds one card image per card (``card-000001.json`` …),
each a fresh :func:`cardlab.emulator.gp.manager.new_card_state` with its own KDD,
CIN and CPLC serial, the ISD keys diversified from the KMC by that KDD (the
KMC never goes on the card), and the life cycle OP_READY or INITIALIZED.

The perso engine picks free images from the directory; it never reads them
as files to learn their state — it loads each into the emulator and talks to
it over APDUs, exactly as to a card in a reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cardlab.emulator.gp.lifecycle import CardLife

PATTERN = "card-*.json"

#: key diversification for one KDD: (ENC, MAC, DEK)
Diversifier = Callable[[bytes], tuple[bytes, bytes, bytes]]


def list_images(directory: str | Path) -> list[Path]:
    """The card images of a stock directory, in name order (temporary files
    of an interrupted atomic write — dot files — are skipped)."""
    return sorted(p for p in Path(directory).glob(PATTERN) if not p.name.startswith("."))


def make_stock(
    directory: str | Path,
    count: int,
    kmc: bytes | Diversifier,
    scheme: str = "kdf3",
    *,
    lifecycle: str = "OP_READY",
    isd_aid: bytes | None = None,
    kvn: int = 0x30,
    first_serial: int | None = None,
    random: Callable[[int], bytes] = os.urandom,
    atr: bytes | None = None,
) -> list[Path]:
    """Create ``count`` blank card images in ``directory``.

    ``kmc`` is either the clear KMC (test stock) or a function that
    diversifies it inside a key store, e.g.
    ``lambda kdd: astuple(ks.diversify_card_keys("KMC", "KDF3", kdd))[:3]``.
    KDDs are random and unique; the CIN is the KDD and the CPLC serial is
    derived from ``first_serial`` (default: random) so every card is unique.
    Existing images are kept; numbering continues after them. ``atr``: the stock's product ATR
    (the profile's ``card.atr`` / ``card.protocol``), default EMV's basic T=1 ATR.
    """
    from cardlab.cardspec.keys import diversify
    from cardlab.emulator import Card
    from cardlab.emulator.gp.manager import new_card_state

    if lifecycle.upper() not in ("OP_READY", "INITIALIZED"):
        raise ValueError("card stock is shipped OP_READY or INITIALIZED")
    life = CardLife[lifecycle.upper()]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    existing = list_images(out)
    start = 1 + max((int(p.stem.split("-")[1]) for p in existing), default=0)
    if first_serial is None:
        first_serial = int.from_bytes(random(3), "big") << 8
    seen: set[bytes] = set()
    made: list[Path] = []
    for n in range(start, start + count):
        kdd = random(10)
        while kdd in seen:
            kdd = random(10)
        seen.add(kdd)
        keys = kmc(kdd) if callable(kmc) else diversify(scheme.lower(), kmc, kdd)
        serial = (first_serial + n) & 0xFFFFFFFF
        if isd_aid is None:
            state = new_card_state(keys=keys, kvn=kvn, kdd=kdd, lifecycle=life, serial=serial, cin=kdd, atr=atr)
        else:
            state = new_card_state(isd_aid=isd_aid, keys=keys, kvn=kvn, kdd=kdd, lifecycle=life,
                                   serial=serial, cin=kdd, atr=atr)
        path = out / f"card-{n:06d}.json"
        Card(state).save(path)
        made.append(path)
    return made
