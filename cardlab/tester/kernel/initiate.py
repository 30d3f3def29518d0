"""Steps 2 and 3: initiate application processing (GET PROCESSING OPTIONS with
the PDOL data, EMV Book 3 §10.1) and read application data (READ RECORD over
the AFL, the offline-authentication input; Book 3 §10.2, §10.3).
"""

from __future__ import annotations

from .. import tlv
from ..channel import CardChannel
from ..exchange import case4, event, send
from ..state import TransactionState
from .common import AIP_CDA, AIP_CVM, AIP_DDA, AIP_ISSUER_AUTH, AIP_SDA, AIP_TRM, REF_INITIATE, REF_READ, S_INITIATE, S_READ, abort
from .dol import build_dol, dol_values
from .selection import final_selection


def initiate_application_processing(state: TransactionState, channel: CardChannel) -> TransactionState:
    """GET PROCESSING OPTIONS with the PDOL data; 6985 → back to final selection."""
    while True:
        state.tvr[:] = bytes(5)
        state.tsi[:] = bytes(2)
        pdol = state.card_data.get(0x9F38, b"")
        values = dol_values(state)
        state.pdol_data = build_dol(pdol, values) if pdol else b""
        named = ", ".join(f"{t:X}" for t, _ in tlv.parse_dol(pdol)) if pdol else "no PDOL: empty 83"
        data, sw = send(state, channel, case4(b"\x80\xA8\x00\x00", tlv.encode(0x83, state.pdol_data)),
                        S_INITIATE, REF_INITIATE, f"GET PROCESSING OPTIONS with the PDOL data ({named})")
        if sw == 0x6985:
            event(state, S_INITIATE, REF_INITIATE, "decision",
                  "conditions of use not satisfied (6985): the application is removed, back to final selection")
            state.candidates = [c for c in state.candidates if c.get(0x4F) != state.aid]
            for tag in list(state.card_data):
                del state.card_data[tag]
            state = final_selection(state, channel)
            if state.outcome:
                return state
            continue
        if sw != 0x9000:
            return abort(state, S_INITIATE, REF_INITIATE, f"GET PROCESSING OPTIONS answered SW {sw:04X}")
        try:
            items = tlv.parse(data)
            if len(items) != 1:
                raise tlv.TlvError("more than one object")
            if items[0].tag == 0x80:
                aip, afl = items[0].value[:2], items[0].value[2:]
            elif items[0].tag == 0x77:
                inner = {t.tag: t.value for t in items[0].children()}
                aip, afl = inner[0x82], inner[0x94]
                state.card_data.update({k: v for k, v in inner.items() if k not in (0x82, 0x94)})
            else:
                raise tlv.TlvError(f"template {items[0].tag:X}")
        except (tlv.TlvError, KeyError) as exc:
            return abort(state, S_INITIATE, REF_INITIATE, f"GPO response format error ({exc})")
        if len(aip) != 2 or not afl or len(afl) % 4:
            return abort(state, S_INITIATE, REF_INITIATE, "AIP or AFL of the wrong length")
        state.aip, state.afl = aip, afl
        state.card_data[0x82], state.card_data[0x94] = aip, afl
        event(state, S_INITIATE, REF_INITIATE, "decision", f"AIP {aip.hex().upper()} ({aip_text(aip)}); "
              f"AFL names {len(afl) // 4} file(s)")
        return state


def aip_text(aip: bytes) -> str:
    names = [(AIP_SDA, "SDA"), (AIP_DDA, "DDA"), (AIP_CVM, "cardholder verification"),
             (AIP_TRM, "terminal risk management"), (AIP_ISSUER_AUTH, "issuer authentication"), (AIP_CDA, "CDA")]
    got = [n for bit, n in names if aip and aip[0] & bit]
    return "supports " + ", ".join(got) if got else "supports nothing optional"


# -- 3. read application data (Book 3 §10.2, §10.3) ---------------------------------------------

MANDATORY = {0x5F24: "application expiration date", 0x5A: "PAN", 0x8C: "CDOL1", 0x8D: "CDOL2"}


def read_application_data(state: TransactionState, channel: CardChannel) -> TransactionState:
    afl = state.afl
    oda = b""
    from_records: set[int] = set()
    for i in range(0, len(afl), 4):
        sfi, first, last, n_oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if not 1 <= sfi <= 30 or first == 0 or last < first or n_oda > last - first + 1:
            return abort(state, S_READ, REF_READ, f"AFL entry {afl[i:i + 4].hex().upper()} is invalid")
        for rec in range(first, last + 1):
            for_oda = rec < first + n_oda
            data, sw = send(state, channel, bytes((0x00, 0xB2, rec, (sfi << 3) | 0x04, 0x00)), S_READ, REF_READ,
                            f"READ RECORD SFI {sfi} record {rec}" + (" (for offline data authentication)"
                                                                      if for_oda else ""))
            if sw != 0x9000:
                return abort(state, S_READ, REF_READ, f"READ RECORD SFI {sfi} record {rec}: SW {sw:04X}")
            state.records[(sfi, rec)] = data
            try:
                items = tlv.parse(data)
            except tlv.TlvError as exc:
                return abort(state, S_READ, REF_READ, f"record SFI {sfi}/{rec} is not BER-TLV ({exc})")
            is70 = len(items) == 1 and items[0].tag == 0x70
            if sfi <= 10 and not is70:
                return abort(state, S_READ, REF_READ, f"record SFI {sfi}/{rec} is not a 70 template")
            if for_oda:
                if sfi <= 10:
                    oda += items[0].value
                else:
                    oda += data
                    if not is70:
                        state.extras["oda_input_error"] = f"record SFI {sfi}/{rec} for ODA is not a 70 template"
            found = tlv.flatten(items[0].value) if is70 else {}
            for tag, value in found.items():
                if tag in from_records:
                    return abort(state, S_READ, REF_READ,
                                  f"data object {tag:X} appears twice in the records (Book 3 §10.2)")
                from_records.add(tag)
                state.card_data[tag] = value
    missing = [f"{t:X} ({n})" for t, n in MANDATORY.items() if t not in state.card_data]
    if missing:
        return abort(state, S_READ, "EMV Book 3 §7.2", "mandatory data missing: " + ", ".join(missing),
                      tvr=("ICC data missing",))
    tag_list = state.card_data.get(0x9F4A)
    if tag_list is not None:
        if tag_list != b"\x82":
            state.extras["oda_input_error"] = f"SDA tag list 9F4A = {tag_list.hex().upper()}: only 82 is allowed"
    state.oda_data = oda  # the record part; ODA appends the values 9F4A names (the AIP)
    event(state, S_READ, "EMV Book 3 §10.3", "note",
          f"{len(state.records)} record(s) read; static data to be authenticated: {len(oda)} bytes")
    return state
