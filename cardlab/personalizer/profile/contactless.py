"""Reader of an application's ``contactless`` section: the application on the contactless
interface too — kernel 3 (EMV Contactless Book C-3, qVSDC, fDDA) or kernel 2 (Book C-2, EMV
mode) — with its problems named by field path (``docs/profile.md``).
"""

from __future__ import annotations

from .checker import Checker, kind
from .model import Contactless, RecordLayout
from .sections import parse_dol
from .tables import TAGS, fmt_tag


_CONTACTLESS_KEYS = ("kernel", "pdol", "ctq", "fdda", "afl", "third_party_data")
#: data the card reads from the contactless PDOL (EMV Contactless Book C-3, the PDOL: the qVSDC
#: cryptogram covers the same terminal data as the contact one; fDDA v01 hashes 9F37 ‖ 9F02 ‖ 5F2A)
_K3_PDOL_REQUIRED = (0x9F66, 0x9F02, 0x9F37)
_FDDA_PDOL_REQUIRED = (0x9F37, 0x9F02, 0x5F2A)


def parse_contactless(
    ck: Checker, raw: object, p: str, records: tuple[RecordLayout, ...], aip: bytes, has_icc_key: bool
) -> Contactless | None:
    """``contactless``: the application's contactless interface (kernel 3 qVSDC per EMV
    Contactless Book C-3, kernel 2 EMV mode per Book C-2); None when absent."""
    if raw is None:
        return None
    m = ck.mapping(raw, p)
    ck.known_keys(m, p, _CONTACTLESS_KEYS)
    kernel = ck.integer(m, "kernel", p, 2, 3)
    pdol = parse_dol(ck, m.get("pdol"), f"{p}.pdol")
    tags = {e.tag for e in pdol}
    ctq: bytes | None = None
    fdda = ck.boolean(m, "fdda", p, default=False)
    third: bytes | None = None
    if kernel == 3:
        if m.get("pdol") is None:
            ck.err(f"{p}.pdol", "missing: kernel 3 needs a PDOL with 9F66 (TTQ), 9F02 and 9F37 (Book C-3)")
        else:
            for t in _K3_PDOL_REQUIRED:
                if t not in tags:
                    ck.err(f"{p}.pdol", f"lacks {fmt_tag(t)} ({TAGS[t].name}), which the qVSDC GPO needs (Book C-3)")
        ctq = ck.hexbytes(m, "ctq", p, (2,), default=b"\x00\x00")
        if fdda:
            for t in _FDDA_PDOL_REQUIRED:
                if t not in tags and t not in _K3_PDOL_REQUIRED:
                    ck.err(f"{p}.pdol", f"lacks {fmt_tag(t)} ({TAGS[t].name}), which fDDA v01 signs (Book C-3)")
            if not has_icc_key:
                ck.err(f"{p}.fdda", "true, but the application has no icc_key (oda DDA or CDA)")
            elif len(aip) == 2 and not aip[0] & 0x20:
                ck.err(f"{p}.fdda", "true, but the AIP does not announce DDA (byte 1 b6 signals fDDA, Book C-3)")
        if m.get("third_party_data") is not None:
            ck.err(f"{p}.third_party_data", "kernel 2 only (9F6E Third Party Data, Book C-2)")
    else:
        for key in ("ctq", "fdda"):
            if m.get(key) is not None:
                ck.err(f"{p}.{key}", "kernel 3 only")
        fdda = False
        if m.get("third_party_data") is not None:
            third = ck.hexbytes(m, "third_party_data", p, range(5, 33))
        if len(aip) == 2 and not aip[1] & 0x80:
            ck.err(f"{p}.kernel", "2, but the AIP lacks byte 2 b8 (EMV mode supported, Book C-2): set aip")
    afl = _contactless_afl(ck, m.get("afl"), f"{p}.afl", records)
    _contactless_records(ck, p, kernel, fdda, afl, records)
    return Contactless(kernel, pdol, ctq, fdda, afl, third)


#: what the kernel needs in the records its AFL reads: kernel 2 (Book C-2, EMV mode: PAN,
#: expiry, CDOL1), kernel 3 (Book C-3: the PAN; 57 comes in the GPO answer), fDDA and CDA the
#: ODA objects (CA index, issuer and ICC certificates and exponents)
_K2_RECORD_TAGS = (0x5A, 0x5F24, 0x8C)
_K3_RECORD_TAGS = (0x5A, 0x57)
_ODA_RECORD_TAGS = (0x8F, 0x90, 0x9F32, 0x9F46, 0x9F47)


def _contactless_records(
    ck: Checker,
    p: str,
    kernel: int,
    fdda: bool,
    afl: tuple[tuple[int, int, int, int], ...] | None,
    records: tuple[RecordLayout, ...],
) -> None:
    """The records the contactless AFL reads hold what the kernel needs (one problem per tag)."""
    read = records if afl is None else tuple(
        r for r in records if any(sfi == r.sfi and first <= r.number <= last for sfi, first, last, _ in afl)
    )
    tags = {t for r in read for t in r.tags}
    needed = list(_K2_RECORD_TAGS if kernel == 2 else _K3_RECORD_TAGS)
    if fdda or (kernel == 2 and any(0x9F46 in r.tags for r in records)):
        needed += _ODA_RECORD_TAGS
    where = f"{p}.afl" if afl is not None else f"{p}.kernel"
    for t in needed:
        if t not in tags:
            ck.err(where, f"no record read on the contactless interface holds {fmt_tag(t)} ({TAGS[t].name}), "
                          f"which kernel {kernel} needs")


def _contactless_afl(
    ck: Checker, raw: object, p: str, records: tuple[RecordLayout, ...]
) -> tuple[tuple[int, int, int, int], ...] | None:
    """``contactless.afl``: ``[[SFI, first, last, #ODA], …]`` naming records of the layout (Book 3 §10.2)."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        ck.err(p, f"expected a list of [SFI, first, last, #ODA], got {kind(raw)}")
        return None
    places = {(r.sfi, r.number) for r in records}
    out: list[tuple[int, int, int, int]] = []
    for i, entry in enumerate(raw):
        ep = f"{p}[{i}]"
        if (
            not isinstance(entry, list)
            or len(entry) != 4
            or any(isinstance(v, bool) or not isinstance(v, int) for v in entry)
        ):
            ck.err(ep, f"{entry!r} is not [SFI, first, last, #ODA] (four integers)")
            continue
        sfi, first, last, oda = entry
        if not 1 <= sfi <= 30 or not 1 <= first <= last <= 254 or not 0 <= oda <= last - first + 1:
            ck.err(ep, f"{entry!r}: SFI 1..30, 1 ≤ first ≤ last, #ODA at most the records of the entry")
            continue
        missing = [n for n in range(first, last + 1) if (sfi, n) not in places]
        if missing:
            ck.err(ep, f"SFI {sfi} record {missing[0]} is not in the afl layout")
            continue
        out.append((sfi, first, last, oda))
    return tuple(out)
