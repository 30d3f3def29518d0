"""The application cryptogram and the certification transaction's end: the
first GENERATE AC by the terminal kernel (EMV Book 3 §6.5.5; CDA, Book 2
§6.6), the ARQC verified by the issuer host under the IMK-AC (Book 2 §8.1),
and — destructive — the online completion carrying issuer scripts (Book 3
§10.10); otherwise the terminal declines offline.
"""

from __future__ import annotations

from dataclasses import replace

from .. import kernel, online
from ..issuer_host import AuthorizationRequest, HostError, cryptogram_version, pin_change, put_data
from ..state import TransactionState
from .context import AppContext, hex_or_dash, sent_since, sw_of
from .host import SCRIPT_RULES, host_for, pin_change_host, script_keys_missing, script_sw


def _cda2(state: TransactionState, response: dict[int, bytes], data2: bytes) -> tuple[bool, str]:
    return kernel.cda_check(state, response, data2, second=True)


def generate_ac(ctx: AppContext) -> None:
    """GENAC-*, CDA-001, KEY-AC-*: the first GENERATE AC asking for an ARQC, the
    ARQC verified by the issuer host; then online with a script (destructive,
    KEY-SMI-001) or declined offline."""
    c, app, v, st = ctx.c, ctx.app, ctx.all_values(), ctx.state
    if 0x8C not in v:
        for rid in ("GENAC-001", "GENAC-002", "GENAC-003", "KEY-AC-001", "KEY-AC-002", "CDA-001", *SCRIPT_RULES):
            c.na(rid, "no CDOL1")
        return
    # first GENERATE AC by the kernel, asking for an ARQC (with CDA when the ICC key is known)
    cda = bool((st.aip or b"\x00")[0] & 0x01) and st.icc_public_key is not None
    st.oda_method = "CDA" if cda else ""
    st.extras.pop("cda_not_requested", None)
    st.extras.get("oda", {}).pop("cda", None)
    st.extras["ask"] = kernel.ARQC
    st.outcome = ""
    mark = len(st.events)
    kernel.first_generate_ac(st, ctx.ch)
    genacs = sent_since(st, mark, 0xAE)
    sw = sw_of(genacs[0]) if genacs else None
    said = f"answered {sw:04X}" if sw is not None else f"not sent: {st.outcome or 'the kernel stopped before it'}"
    if not c.check("GENAC-001", sw == 0x9000, f"GENERATE AC (ARQC{'+CDA' if cda else ''}) {said}", "9000",
                   f"{sw:04X}" if sw is not None else "not sent"):
        c.check("KEY-AC-001", False, f"no ARQC to verify: GENERATE AC {said}")
        for rid in ("GENAC-002", "GENAC-003", "KEY-AC-002", "CDA-001", *SCRIPT_RULES):
            c.na(rid, "GENERATE AC failed")
        return
    raw = genacs[0].response[:-2]
    fmt = {0x80: 1, 0x77: 2}.get(raw[0], 0) if raw else 0
    c.check("GENAC-002", fmt == app.response_format or (cda and fmt == 2), f"response format {fmt}", str(app.response_format), str(fmt))
    resp = st.ac1
    cid = resp.get(0x9F27, b"\x00")[0]
    if cda:
        result = st.extras.get("oda", {}).get("cda") or {}
        ok = bool(result.get("ok"))
        c.check("CDA-001", ok, "CDA signed dynamic data " + ("verifies (CID, AC, transaction data hash)" if ok else f"does not verify: {result.get('reason', 'no signature checked')}"))
    else:
        c.na("CDA-001", "AIP does not announce CDA" if not (st.aip + b"\x00")[0] & 1 else "no ICC key recovered")
    atc = resp.get(0x9F36, b"")
    if ctx.atc is not None and atc:
        c.check("GENAC-003", int.from_bytes(atc, "big") == ctx.atc + 1, "ATC after GPO", str(ctx.atc + 1), str(int.from_bytes(atc, "big")))
    else:
        c.na("GENAC-003", "ATC not readable before the transaction")
    iad = resp.get(0x9F10, b"")
    cvn_code = {10: 0x0A, 18: 0x12, 16: 0x10}.get(app.cvn, app.cvn)
    dki = int(app.risk.get("dki", 1))
    if app.cvn in (10, 18):
        got = (iad[2], iad[1]) if len(iad) >= 3 else None
    else:
        got = (iad[1], iad[0]) if len(iad) >= 2 else None
    c.check("KEY-AC-002", got == (cvn_code, dki), "IAD CVN and DKI", f"CVN {cvn_code:02X} DKI {dki:02X}", f"CVN {got[0]:02X} DKI {got[1]:02X}" if got else hex_or_dash(iad))
    ac = resp.get(0x9F26)
    if cid & 0xC0 != 0x80 or ac is None:
        c.check("KEY-AC-001", False, f"no ARQC to verify (CID {cid:02X})")
    else:
        _verify_ac(ctx)
    if cid & 0xC0 != 0x80:
        for rid in SCRIPT_RULES:
            c.na(rid, "no ARQC: no online transaction to carry a script")
        return
    if ctx.destructive:
        _script(ctx)
    else:
        for rid in SCRIPT_RULES:
            c.na(rid, "destructive checks not requested (--destructive): a script changes card state")
        # completion: unable to go online, the terminal declines (the card's offline counters stay untouched)
        online.complete_offline(st, ctx.ch, decline=True)


def _verify_ac(ctx: AppContext) -> None:
    """KEY-AC-001: the issuer host verifies the ARQC under the IMK-AC with the
    record's PAN and PSN (the key the card should hold)."""
    c, st = ctx.c, ctx.state
    host = host_for(ctx)
    if host is None:
        c.not_run("KEY-AC-001", f"the key store holds no IMK-AC for {ctx.app.keys.get('imk_ac')!r}: the ARQC cannot be verified")
        return
    # no PSN: the ICC master key is derived with 00 (EMV Book 2 Annex A1.4.1)
    request = replace(AuthorizationRequest.from_state(st), pan=ctx.rec.pan, psn=ctx.rec.psn or "00")
    valid, why, _expected = host.verify(request)
    name = ctx.keys.symmetric_key(ctx.app.keys.get("imk_ac"), "IMK-AC")
    version, _ = cryptogram_version(request.iad, request.aid)
    if version is not None and version.cvn != ctx.app.cvn:
        valid, why = False, f"the card computes {version.name}, the profile says CVN {ctx.app.cvn}"
    c.check("KEY-AC-001", valid is True, f"ARQC under IMK-AC {name[0] if name else '?'!r}: " + why,
            "ARQC = pyemv(IMK)", "match" if valid else "mismatch" if valid is False else "not verifiable")  # fmt: skip


def _script(ctx: AppContext) -> None:
    """KEY-SMI-001: the issuer host approves online and sends a PUT DATA of an
    unchanged value MACed with the SMI session key; the card accepting it
    proves the ICC SMI key. KEY-SMC-001 (first part): a PIN CHANGE/UNBLOCK to
    the record's own PIN, enciphered under the SMC session key, in its own
    script (Book 3 §10.10: a failing script does not stop the others)."""
    c, st, v = ctx.c, ctx.state, ctx.all_values()
    host = host_for(ctx, "approve")
    missing = script_keys_missing(ctx)
    if host is None or missing or 0x8D not in v:
        why = missing or "no CDOL2: no second GENERATE AC to complete an online transaction"
        for rid in SCRIPT_RULES:
            c.na(rid, why)
        online.complete_offline(st, ctx.ch, decline=True)
        return
    target = 0x9F42 if 0x9F42 in v else 0x5F28
    scripts = [put_data(target, v.get(target, b""))]
    if pin_change_host(ctx) is not None:
        scripts.append(pin_change(ctx.rec.pin))
    mark = len(st.script_results)
    try:
        online.process(st, ctx.ch, host, scripts=scripts, cda_check=_cda2)
    except HostError as exc:
        for rid in SCRIPT_RULES:
            c.na(rid, f"script not computable: {exc}")
        online.complete_offline(st, ctx.ch, decline=True)
        return
    ctx.scripts_online = True
    sent = script_sw(st, mark)
    ctx.pin_change_sw = sent.get(0x24)
    sw = sent.get(0xDA)
    if sw is None:
        c.check("KEY-SMI-001", False, f"no script command reached the card ({st.online_response.get('arqc_reason', 'no host answer')})")
        return
    c.check("KEY-SMI-001", sw == 0x9000, f"PUT DATA {target:X} with a MAC under the SMI key answered {sw:04X}"
            + (" (secure messaging data incorrect: the MAC)" if sw == 0x6988 else ""), "9000", f"{sw:04X}")
