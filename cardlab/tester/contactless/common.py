"""What both contactless kernels share: GET PROCESSING OPTIONS with the PDOL data and
READ RECORD over the AFL with the offline-authentication input (EMV Contactless
Book C-2 §5, Book C-3 §5; the record rules of EMV Book 3 §10.2–§10.3)."""

from __future__ import annotations

from .. import tlv
from ..channel import CardChannel
from ..exchange import case4, event, send
from ..kernel.dol import build_dol, dol_values
from ..state import TransactionState
from .outcome import END_APPLICATION, SELECT_NEXT, TRY_ANOTHER_INTERFACE, Outcome


def gpo(state: TransactionState, channel: CardChannel, step: str, ref: str) -> tuple[dict[int, bytes], Outcome | None]:
    """GET PROCESSING OPTIONS; the answer's objects (format 1 split into 82 and 94) or the
    outcome its status word gives (6984 → Try Another Interface, 6985 → Select Next,
    others → End Application; Book C-3 §5.2.2, Book C-2 §5.2)."""
    pdol = state.card_data.get(0x9F38, b"")
    state.pdol_data = build_dol(pdol, dol_values(state)) if pdol else b""
    named = ", ".join(f"{t:X}" for t, _ in tlv.parse_dol(pdol)) if pdol else "no PDOL: empty 83"
    data, sw = send(state, channel, case4(b"\x80\xA8\x00\x00", tlv.encode(0x83, state.pdol_data)), step, ref,
                    f"GET PROCESSING OPTIONS with the PDOL data ({named})")
    if sw == 0x6984:
        return {}, Outcome(TRY_ANOTHER_INTERFACE, "the card refused contactless processing (GPO 6984)",
                           alternate_interface="contact chip")
    if sw == 0x6985:
        return {}, Outcome(SELECT_NEXT, "conditions of use not satisfied (GPO 6985): the next combination")
    if sw != 0x9000:
        return {}, Outcome(END_APPLICATION, f"GET PROCESSING OPTIONS answered SW {sw:04X}")
    try:
        items = tlv.parse(data)
        if len(items) != 1:
            raise tlv.TlvError("more than one object")
        if items[0].tag == 0x80:
            found = {0x82: items[0].value[:2], 0x94: items[0].value[2:]}
        elif items[0].tag == 0x77:
            found = {t.tag: t.value for t in items[0].children()}
        else:
            raise tlv.TlvError(f"template {items[0].tag:X}")
    except tlv.TlvError as exc:
        return {}, Outcome(END_APPLICATION, f"GPO response format error ({exc})")
    cl = state.extras.setdefault("contactless", {})
    cl["gpo_format"], cl["gpo"] = (1 if items[0].tag == 0x80 else 2), dict(found)
    state.card_data.update(found)
    state.aip, state.afl = found.get(0x82, b""), found.get(0x94, b"")
    return found, None


def read_records(state: TransactionState, channel: CardChannel, step: str, ref: str) -> Outcome | None:
    """READ RECORD of every AFL entry; the records for ODA make ``state.oda_data``."""
    afl = state.afl
    if len(afl) % 4:
        return Outcome(END_APPLICATION, f"AFL {afl.hex().upper()} is not a multiple of 4 bytes")
    oda = b""
    seen: set[int] = set()
    for i in range(0, len(afl), 4):
        sfi, first, last, n_oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if not 1 <= sfi <= 30 or first == 0 or last < first or n_oda > last - first + 1:
            return Outcome(END_APPLICATION, f"AFL entry {afl[i:i + 4].hex().upper()} is invalid")
        for rec in range(first, last + 1):
            for_oda = rec < first + n_oda
            data, sw = send(state, channel, bytes((0x00, 0xB2, rec, (sfi << 3) | 0x04, 0x00)), step, ref,
                            f"READ RECORD SFI {sfi} record {rec}" + (" (for offline data authentication)"
                                                                      if for_oda else ""))
            if sw != 0x9000:
                return Outcome(END_APPLICATION, f"READ RECORD SFI {sfi} record {rec}: SW {sw:04X}")
            state.records[(sfi, rec)] = data
            try:
                items = tlv.parse(data)
            except tlv.TlvError as exc:
                return Outcome(END_APPLICATION, f"record SFI {sfi}/{rec} is not BER-TLV ({exc})")
            is70 = len(items) == 1 and items[0].tag == 0x70
            if not is70:
                return Outcome(END_APPLICATION, f"record SFI {sfi}/{rec} is not a 70 template")
            if for_oda:
                oda += items[0].value if sfi <= 10 else data
            for tag, value in tlv.flatten(items[0].value).items():
                if tag in seen:
                    return Outcome(END_APPLICATION, f"data object {tag:X} appears twice in the records")
                seen.add(tag)
                state.card_data[tag] = value
    state.oda_data = oda
    event(state, step, ref, "note", f"{len(state.records)} record(s) read; static data to be authenticated: "
          f"{len(oda)} bytes; UI request '17' Card Read OK (the card may be removed)")
    return None
