"""Offline data authentication rules (EMV Book 2 §5–6): the CA key, the
issuer and ICC certificates field by field, SDA and DDA — by the tester's
ODA module (cardlab.tester.oda), the certificate fields recovered by
cardlab.tester.rsa with plain integer arithmetic.
"""

from __future__ import annotations

from .. import oda
from ..capk import CaKeyList, CaPublicKey
from ..rsa import IccCertificate, IssuerCertificate, certificate_expired, recover_icc_certificate
from .context import AppContext, hex_or_dash


def _ca_keys(ctx: AppContext, rid: bytes, idx: int) -> tuple[CaKeyList, str]:
    """The CA key for the card's RID and index: the key store's, the terminal
    profile's, else the key store's only CA key (a test CA under another RID)."""
    found: tuple[int, int] | None = None
    note = ""
    ks = ctx.keys.ca_key(rid, idx)
    if ks is not None:
        found = (ks.modulus, ks.exponent)
    elif (tk := ctx.terminal.ca_key(rid, idx)) is not None:
        found, note = (tk.modulus, tk.exponent), " (from the terminal profile)"
    else:
        cas = [(n, key) for n, key in ctx.keys.rsa_public.items() if key[0] == "CA"]
        if len(cas) == 1:
            found = (cas[0][1][1], cas[0][1][2])
            note = f" (RID {rid.hex().upper()} index {idx:02X} not listed; the key store's only CA key {cas[0][0]!r})"
    out = CaKeyList()
    if found is not None:
        n, e = found
        out.add(CaPublicKey(rid, idx, n.to_bytes((n.bit_length() + 7) // 8, "big"), e.to_bytes((e.bit_length() + 7) // 8, "big")))
    return out, note


def _mmyy(b: bytes) -> str:
    return b.hex().upper() or "-"


def oda_rules(ctx: AppContext) -> None:
    """CERT-ISS-*, CERT-ICC-*, SDA-001 and DDA-001; for CDA, the ICC key the
    GENERATE AC step needs (:mod:`.cryptograms`)."""
    c, v, app, st = ctx.c, ctx.all_values(), ctx.app, ctx.state
    iss_rules = [f"CERT-ISS-00{i}" for i in range(1, 10)]
    icc_rules = ["CERT-ICC-001", "CERT-ICC-002", "CERT-ICC-003", "CERT-ICC-PAN-001", "CERT-ICC-005", "CERT-ICC-006", "CERT-ICC-007"]
    if 0x90 not in v and 0x8F not in v:
        for rid in iss_rules + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "no ODA data on the card")
        return
    idx = v[0x8F][0] if v.get(0x8F) else -1
    rid_ = app.aid[:5]
    cas, note = _ca_keys(ctx, rid_, idx)
    if not c.check("CERT-ISS-001", len(cas) > 0, f"CA key RID {rid_.hex().upper()} index {idx & 0xFF:02X}" + (note or (" known" if len(cas) else " unknown"))):
        for rid in iss_rules[1:] + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "CA public key unknown")
        return
    ca = next(iter(cas))
    n_ca = len(ca.modulus)
    cert = v.get(0x90, b"")
    if not c.check("CERT-ISS-002", len(cert) == n_ca, "issuer certificate length", str(n_ca), str(len(cert))):
        for rid in iss_rules[2:] + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "issuer certificate unusable")
        return
    # the issuer key by the ODA module (Book 2 §5.3); its fields by cardlab.tester.rsa
    try:
        oda.issuer_public_key(st, cas, ctx.today)
    except oda.OdaError:
        pass  # the certificate's fields say which check failed
    x: IssuerCertificate | None = st.extras.get("oda", {}).get("issuer")
    if x is None or not x.frame_ok:
        why = "; ".join(x.problems) if x is not None else "issuer certificate not recovered"
        c.check("CERT-ISS-003", False, why, "6A 02 … BC", f"{x.header:02X} {x.format:02X} … {x.trailer:02X}" if x is not None else "-")
        for rid in iss_rules[3:] + icc_rules + ["SDA-001", "DDA-001"]:
            c.na(rid, "issuer certificate not recovered")
        return
    c.check("CERT-ISS-003", True, "recovered header/format/trailer", "6A 02 … BC", f"{x.header:02X} {x.format:02X} … {x.trailer:02X}")
    c.check("CERT-ISS-004", x.hash_ok, "issuer certificate hash", hex_or_dash(x.hash_result), hex_or_dash(x.computed_hash))
    pan = v.get(0x5A, b"").hex().upper().rstrip("F")
    ident = x.issuer_id_digits
    c.check("CERT-ISS-005", x.matches_pan(pan), "issuer identifier vs PAN", ident, pan[: len(ident)])
    c.check("CERT-ISS-006", not certificate_expired(x.expiry, ctx.today), f"issuer certificate expiry MMYY {_mmyy(x.expiry)}", f"≥ {ctx.today:%m%y}", _mmyy(x.expiry))
    room = len(x.key_field)
    need = max(0, x.pk_length - room)
    c.check("CERT-ISS-007", len(x.remainder) == need, f"N_I {x.pk_length}, room {room}: remainder of {need} bytes needed", str(need), str(len(x.remainder)))
    c.check("CERT-ISS-008", x.hash_algorithm == 1 and x.pk_algorithm == 1, "algorithm indicators", "01 01", f"{x.hash_algorithm:02X} {x.pk_algorithm:02X}")
    n_iss, e_iss = x.public_key
    ks_iss = ctx.keys.rsa_key(app.keys.get("issuer_rsa"), "ISSUER")
    if ks_iss is None:
        c.not_run("CERT-ISS-009", f"the key store holds no issuer key {app.keys.get('issuer_rsa')!r}: the certificate's key cannot be compared")
    else:
        c.check("CERT-ISS-009", (ks_iss[1], ks_iss[2]) == (n_iss, e_iss) and len(x.exponent) == x.exponent_length,
                f"issuer key {ks_iss[0]!r} of the key store vs the certified key",
                f"{ks_iss[1].bit_length()} bits, e={ks_iss[2]}", f"{n_iss.bit_length()} bits, e={e_iss}")  # fmt: skip
    aip = (st.aip or b"\x00")[0]
    # SDA by the ODA module (Book 2 §5.4)
    if 0x93 in v:
        if ctx.static_data is None:
            c.check("SDA-001", False, "static data to be authenticated could not be built (ODA records / 9F4A)")
        else:
            ok, why = _authenticate(ctx, "SDA")
            c.check("SDA-001", ok, "signed static application data " + ("verifies" if ok else f"does not verify: {why}"))
    else:
        c.na("SDA-001", "no 93 on the card")
    # ICC certificate (Book 2 §6.4): fields by cardlab.tester.rsa with the recovered issuer key
    if 0x9F46 not in v:
        for rid in icc_rules + ["DDA-001"]:
            c.na(rid, "no ICC certificate on the card")
        return
    ic = v[0x9F46]
    size_i = len(x.modulus)
    if not c.check("CERT-ICC-001", len(ic) == size_i, "ICC certificate length", str(size_i), str(len(ic))):
        for rid in icc_rules[1:] + ["DDA-001"]:
            c.na(rid, "ICC certificate unusable")
        return
    rem_ic, exp_ic = v.get(0x9F48, b""), v.get(0x9F47, b"")
    y: IccCertificate = recover_icc_certificate(ic, n_iss, e_iss, rem_ic, exp_ic, ctx.static_data)
    if not y.frame_ok:
        c.check("CERT-ICC-002", False, "; ".join(y.problems), "6A 04 … BC", f"{y.header:02X} {y.format:02X} … {y.trailer:02X}")
        for rid in icc_rules[2:] + ["DDA-001"]:
            c.na(rid, "ICC certificate not recovered")
        return
    c.check("CERT-ICC-002", True, "recovered header/format/trailer", "6A 04 … BC", f"{y.header:02X} {y.format:02X} … {y.trailer:02X}")
    if ctx.static_data is None:
        c.check("CERT-ICC-003", False, "static data to be authenticated could not be built")
    else:
        c.check("CERT-ICC-003", y.hash_ok, "ICC certificate hash over the static data", hex_or_dash(y.hash_result), hex_or_dash(y.computed_hash))
    c.check("CERT-ICC-PAN-001", y.pan_digits == pan, "PAN in the ICC certificate vs 5A", pan, y.pan_digits)
    exp_card = v.get(0x5F24, b"\x00\x00")
    digits = y.expiry.hex()
    cert_ym = (int(digits[2:4]), int(digits[:2])) if len(digits) == 4 and digits.isdigit() else (0, 0)
    card_ym = (int(exp_card[:1].hex()), int(exp_card[1:2].hex())) if exp_card[:2].hex().isdigit() else (0, 0)
    c.check("CERT-ICC-005", not certificate_expired(y.expiry, ctx.today) and cert_ym >= card_ym,
            f"ICC certificate expiry MMYY {_mmyy(y.expiry)}, application expires {exp_card[:2].hex()} (YYMM)",
            f"≥ {exp_card[1:2].hex()}{exp_card[:1].hex()}", _mmyy(y.expiry))  # fmt: skip
    room_ic = len(y.key_field)
    need_ic = max(0, y.pk_length - room_ic)
    c.check("CERT-ICC-006", len(rem_ic) == need_ic, f"N_IC {y.pk_length}, room {room_ic}", str(need_ic), str(len(rem_ic)))
    e_icc = int.from_bytes(exp_ic or b"\x03", "big")
    if app.icc_key_bits is not None:
        c.check("CERT-ICC-007", y.pk_length * 8 == app.icc_key_bits and e_icc == app.icc_key_exponent, "ICC key size/exponent",
                f"{app.icc_key_bits} bits, e={app.icc_key_exponent}", f"{y.pk_length * 8} bits, e={e_icc}")  # fmt: skip
    else:
        c.na("CERT-ICC-007", "the profile gives no icc_key")
    # DDA by the ODA module (INTERNAL AUTHENTICATE with the DDOL, Book 2 §6.5)
    if aip & 0x20:
        ok, why = _authenticate(ctx, "DDA")
        c.check("DDA-001", ok, "INTERNAL AUTHENTICATE: signature " + ("verifies" if ok else f"does not verify: {why}"))
    else:
        c.na("DDA-001", "AIP does not announce DDA")
    if aip & 0x01:
        _authenticate(ctx, "CDA")  # the ICC key for the CDA signature of GENERATE AC


def _authenticate(ctx: AppContext, method: str) -> tuple[bool, str]:
    """One ODA method by :func:`cardlab.tester.oda.authenticate`: (verdict, the ODA module's reason)."""
    st = ctx.state
    cas, _note = _ca_keys(ctx, ctx.app.aid[:5], st.card_data.get(0x8F, b"\xFF")[0])
    mark = len(st.events)
    oda.authenticate(st, ctx.ch, cas, today=ctx.today, method=method)
    decisions = [e.text for e in st.events[mark:] if e.kind == "decision"]
    return st.oda_ok is not False, decisions[-1] if decisions else ""
