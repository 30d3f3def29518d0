"""The contactless interface of the EMV application: kernel 3 qVSDC (EMV Contactless
Book C-3) answered in GET PROCESSING OPTIONS, and the kernel 2 EMV-mode GPO (Book C-2).

Both interfaces share one application instance: one ATC, one PIN try counter, one set of
offline counters (issue 16). The qVSDC transaction is complete after the GPO answer: the
cryptogram, the card's risk decision and (with fDDA) the signature are in it, so GENERATE AC
is refused afterwards (6985). Kernel 2 in EMV mode goes on with READ RECORD and GENERATE AC
exactly as the contact path (CDA, Book C-2); Mag-stripe mode (COMPUTE CRYPTOGRAPHIC
CHECKSUM) is out of scope.

Card decisions from the Terminal Transaction Qualifiers (9F66, Book C-3 data dictionary):

* byte 1 b6 (EMV mode / qVSDC supported) clear, or no TTQ: the card cannot transact
  contactless: 6985, which the reader turns into "Select Next" (Book C-3, GPO response handling);
* byte 1 b4 offline-only reader: TC if card risk management allows an offline approval, AAC
  when an upper limit is reached (the reader cannot go online);
* byte 2 b8 online cryptogram required: ARQC (or AAC when the card declines);
* otherwise (online-capable reader): ARQC when card risk management wants to go online, TC
  otherwise;
* byte 2 b7 CVM required with CTQ byte 1 b8 (online PIN required) and TTQ byte 1 b3 (online
  PIN supported): an online PIN needs an online authorisation, so ARQC; on an offline-only
  reader the card approves only if the CTQ allows signature (b7) and the reader supports it
  (TTQ byte 1 b2), else AAC.

fDDA version 01 (Book C-3, fDDA): Card Authentication Related Data 9F69 = 01 ‖ Card
Unpredictable Number (4 random bytes) ‖ CTQ; ICC Dynamic Data = 02 ‖ ATC; terminal dynamic
data hashed = 9F37 ‖ 9F02 ‖ 5F2A ‖ 9F69. The SDAD is produced with a TC, and with an ARQC
when the reader supports ODA for online authorisations (TTQ byte 1 b1); never with an AAC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardlab.cardspec import tlv

from ...apdu import SW, Command, StatusError
from . import ac, core
from .cvn import CvrFacts
from .perso import parse_dol
from .records import record_tag

if TYPE_CHECKING:
    from ...applet import Context
    from .instance import EmvInstance

#: TTQ (9F66) bits, Book C-3 data dictionary
TTQ_QVSDC = (0, 0x20)  # byte 1 b6 EMV mode (qVSDC) supported
TTQ_OFFLINE_ONLY = (0, 0x08)  # byte 1 b4 offline-only reader
TTQ_ONLINE_PIN = (0, 0x04)  # byte 1 b3 online PIN supported
TTQ_SIGNATURE = (0, 0x02)  # byte 1 b2 signature supported
TTQ_ODA_ONLINE = (0, 0x01)  # byte 1 b1 ODA for online authorisations supported
TTQ_ONLINE_REQUIRED = (1, 0x80)  # byte 2 b8 online cryptogram required
TTQ_CVM_REQUIRED = (1, 0x40)  # byte 2 b7 CVM required
#: CTQ (9F6C) bits, Book C-3 data dictionary
CTQ_ONLINE_PIN = (0, 0x80)  # byte 1 b8 online PIN required
CTQ_SIGNATURE = (0, 0x40)  # byte 1 b7 signature required
FDDA_VERSION_01 = 0x01
CARD_UN_LENGTH = 4  # Card Unpredictable Number in 9F69 (Book C-3 data dictionary)


def _bit(value: bytes, bit: tuple[int, int]) -> bool:
    i, mask = bit
    return len(value) > i and bool(value[i] & mask)


def contactless_pdol(app: EmvInstance) -> bytes:
    """The PDOL (9F38) of the contactless A5 (DGI 9103), empty without one."""
    found = tlv.find(app.data.fci_proprietary_contactless, 0x9F38) if app.data.fci_proprietary_contactless else None
    return found.value if found is not None else b""


def get_processing_options(app: EmvInstance, ctx: Context, cmd: Command) -> bytes:
    """GPO on the contactless interface: kernel 3 qVSDC or kernel 2 EMV mode (module docstring);
    6985 for an application without a contactless section."""
    if not app.data.kernel:
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "no contactless interface")
    pdol_data = core.gpo_data(app, ctx, cmd)
    values = check_ttq(app, pdol_data) if app.data.kernel == 3 else None
    core.start_transaction(app, pdol_data, app.data.aip_contactless)
    if values is not None:
        return qvsdc_gpo(app, ctx, values)
    return emv_mode_gpo(app)


def check_ttq(app: EmvInstance, pdol_data: bytes) -> dict[int, bytes]:
    """The PDOL values of a kernel 3 GPO; 6985 without qVSDC in the TTQ (before the ATC moves)."""
    values = ac.split_dol(parse_dol(contactless_pdol(app)), pdol_data)
    ttq = values.get(0x9F66, b"")
    if len(ttq) < 2 or not _bit(ttq, TTQ_QVSDC):
        raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "no TTQ with qVSDC support (Book C-3: select next)")
    return values


def _decide(app: EmvInstance, ttq: bytes, checks: ac._Checks) -> int:
    """The CID of the qVSDC answer (module docstring)."""
    if checks.decline:
        return ac.AAC | ac.CID_ADVICE | checks.reason
    ctq = app.data.ctq
    online_pin = _bit(ttq, TTQ_CVM_REQUIRED) and _bit(ctq, CTQ_ONLINE_PIN) and _bit(ttq, TTQ_ONLINE_PIN)
    signature_ok = _bit(ctq, CTQ_SIGNATURE) and _bit(ttq, TTQ_SIGNATURE)
    if _bit(ttq, TTQ_OFFLINE_ONLY):
        if checks.decline_offline or (online_pin and not signature_ok):
            return ac.AAC
        return ac.TC
    if _bit(ttq, TTQ_ONLINE_REQUIRED) or checks.online or online_pin:
        return ac.ARQC
    return ac.TC


def qvsdc_gpo(app: EmvInstance, ctx: Context, values: dict[int, bytes]) -> bytes:
    """The qVSDC GPO answer, format 2 (Book C-3): 77 {82, 94, 9F36, 9F26, 9F10, 9F27,
    9F6C, 57, 5F34, [9F69, 9F4B]}. The ATC was incremented by the caller."""
    d, tx = app.data, app.tx
    ttq = values[0x9F66]
    facts = CvrFacts()
    checks = ac._risk(app, values, facts)
    cid = _decide(app, ttq, checks)
    kind = cid & ac.TYPE_MASK
    facts.first_ac = kind
    prof = ac.cvn_profile(app)
    atc = d.atc.to_bytes(2, "big")
    aip = d.aip_contactless
    un = values.get(0x9F37, bytes(4))
    fdda = bool(d.fdda_version) and kind != ac.AAC and (kind == ac.TC or _bit(ttq, TTQ_ODA_ONLINE))
    facts.dda_performed = fdda
    cvr = prof.encode_cvr(facts)
    iad = prof.issuer_application_data(cvr, d.risk.dki, ac._iad_counters(app))
    # the qVSDC cryptogram covers the same data as the contact one, from the PDOL (Book C-3)
    cryptogram = prof.application_cryptogram(d.mk_ac, atc, un, prof.ac_input(values, aip, atc, iad, cvr))
    items: list[tuple[int, bytes]] = [
        (0x82, aip), (0x94, d.afl_contactless), (0x9F36, atc), (0x9F26, cryptogram), (0x9F10, iad),
        (0x9F27, bytes([cid])), (0x9F6C, d.ctq),
    ]  # fmt: skip
    for tag in (0x57, 0x5F34):
        value = record_tag(d, tag)
        if value is not None:
            items.append((tag, value))
    if fdda:
        card_un = ctx.card.random(CARD_UN_LENGTH)
        cad = bytes([FDDA_VERSION_01]) + card_un + d.ctq  # 9F69, Book C-3 data dictionary
        terminal = un + values.get(0x9F02, bytes(6)) + values.get(0x5F2A, bytes(2)) + cad
        sdad = core.sign_dynamic_data(app, bytes([len(atc)]) + atc, terminal)
        items += [(0x9F69, cad), (0x9F4B, sdad)]

    # -- state changes, before the response leaves the card --------------------------
    tx.ac_count = 2  # the transaction is complete: no GENERATE AC follows a qVSDC GPO
    tx.first_cid = cid
    tx.amount = checks.amount
    tx.unpredictable_number = un
    if kind == ac.TC:
        ac._count_offline(app, checks)
    elif kind == ac.ARQC:
        tx.arqc = cryptogram
    ac._log(app, values, cid, cryptogram, iad)
    app.mark_dirty()
    return tlv.encode(0x77, tlv.encode_all(items))


def emv_mode_gpo(app: EmvInstance) -> bytes:
    """Kernel 2 GPO answer in EMV mode (Book C-2): 77 {82 AIP (byte 2 b8 EMV mode), 94
    contactless AFL, [9F6E Third Party Data]}; GENERATE AC follows as on the contact side."""
    d = app.data
    items: list[tuple[int, bytes]] = [(0x82, d.aip_contactless), (0x94, d.afl_contactless)]
    if d.third_party_data:
        items.append((0x9F6E, d.third_party_data))
    return tlv.encode(0x77, tlv.encode_all(items))
