"""Card stock: blank emulated cards as a manufacturer ships them.

A stock directory holds one card image per card (``card-000001.json`` …),
each a fresh :func:`cardlab.emulator.gp.manager.new_card_state` with its own KDD,
CIN and CPLC serial, the ISD keys diversified from the KMC by that KDD (the
KMC never goes on the card), and the life cycle OP_READY or INITIALIZED.

The perso engine picks free images from the directory; it never reads them
as files to learn their state — it loads each into the emulator and talks to
it over APDUs, exactly as to a card in a reader.

A card belongs to one batch whatever runs at once: before a batch's job database
records a claim, the image is reserved in the stock itself (:func:`reserve`) — a file
``.claims/<image>`` created with ``O_CREAT | O_EXCL``, which the file system guarantees
only one process (of any batch, on any machine sharing the directory) can create. It
names the batch that holds the card; that batch may take it again (resume).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cardlab.emulator.gp.lifecycle import CardLife

PATTERN = "card-*.json"
#: the stock's claim markers, one per image a batch holds
CLAIMS = ".claims"

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


def reserve(image: str | Path, owner: str) -> bool:
    """Reserve ``image`` for the batch ``owner``; False when another batch holds it.

    The marker is created exclusively (``O_EXCL``: two batches never both get it) but not synced:
    a power cut may lose it, or leave it empty (an empty marker holds the card for nobody: it
    stays taken). A lost marker lets another batch claim the card again, which is safe: the
    card's claim is in this batch's job database, and no batch writes a card before its blank
    check (a card holding data is set aside, :func:`cardlab.personalizer.engine.flow.check_blank`)."""
    image = Path(image)
    marker = image.parent / CLAIMS / image.name
    marker.parent.mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return holder(image) == owner
    try:
        os.write(fd, (owner + "\n").encode())
    finally:
        os.close(fd)
    return True


def holder(image: str | Path) -> str | None:
    """The batch that holds ``image`` (None: free). A marker whose writer died before it wrote
    its name holds the card for nobody in particular: it stays taken (it may be in use)."""
    marker = Path(image).parent / CLAIMS / Path(image).name
    try:
        return marker.read_text(encoding="utf-8").partition("\n")[0].strip()
    except FileNotFoundError:
        return None


def note_record(image: str | Path, owner: str, record: int, card_id: str) -> None:
    """Write into ``image``'s claim marker the record the batch ``owner`` puts on it (the batch's
    name stays the first line, so :func:`holder` reads it the same); a marker another batch holds
    is left alone. The card id is the issuer's reference of the record, never a PAN. The line is
    appended (one small write, no file replaced: replacing a file by rename costs a flush of it
    on ext4); the last whole ``record`` line is the card's (:func:`claim_of`)."""
    if holder(image) != owner:
        return
    marker = Path(image).parent / CLAIMS / Path(image).name
    fd = os.open(marker, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"record {record} {card_id}\n".encode())
    finally:
        os.close(fd)


def claim_of(image: str | Path) -> tuple[str, int | None]:
    """(batch, record) of ``image``'s claim marker (record None: claimed, no record started yet)."""
    marker = Path(image).parent / CLAIMS / Path(image).name
    lines = marker.read_text(encoding="utf-8").split("\n")
    record = None
    for line in lines[1:-1]:  # whole lines only: a torn last note is not a record
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "record" and parts[1].isdigit():
            record = int(parts[1])
    return lines[0].strip(), record
