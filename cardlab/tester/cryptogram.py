"""The application cryptogram, opened up: every step from the issuer master key
to the 8 bytes the card answered in ``9F26``, for teaching (TEST keys only).

1. ICC master key (EMV 4.4 Book 2 Annex A1.4): Option A takes the rightmost
   16 digits of PAN ‖ PSN as Y; MK = 3DES(IMK)[Y] ‖ 3DES(IMK)[Y ⊕ FF…FF], with
   odd parity. Option B (PANs over 16 digits) first hashes PAN ‖ PSN with SHA-1
   and decimalises it into Y.
2. Session key per cryptogram version: Visa CVN 10 none (the ICC master key
   itself); Visa CVN 18 the EMV common session key derivation (Book 2
   A1.3.1) with R = ATC ‖ 00…00; Mastercard CVN 16 the Mastercard SKD, the same
   construction with R = ATC ‖ 00 00 ‖ UN. In both, SK = 3DES(MK)[R with byte 3
   = F0] ‖ 3DES(MK)[R with byte 3 = 0F], with odd parity.
3. The data, in the order the version MACs it (Book 2 §8.1.1 Table 28 plus the
   CVR or IAD), each element taken from the CDOL1 data or from the card.
4. Padding (ISO/IEC 9797-1): method 1 (zeros) for Visa CVN 10, method 2
   (80 then zeros) for the others.
5. The MAC, ISO/IEC 9797-1 algorithm 3 (Book 2 A1.2.1): single DES CBC under
   the left key half, then the last block deciphered under the right half and
   enciphered again under the left; written out block by block here and
   checked against :func:`pyemv.mac.mac_iso9797_3`.

The PAN is masked wherever it shows (first 6 and last 4 digits, so Y keeps
only what the mask lets through); key values are shown because, and only
when, the key store is marked test (:func:`keystore_is_test`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from pyemv import mac as pyemv_mac
from pyemv import tools as pyemv_tools

BOOK = "EMV Book 2 §8.1, Annex A1.2-A1.4"


def keystore_is_test(path: str | os.PathLike[str]) -> bool:
    """A key store is a TEST key store when its top level says ``"test_only": true``
    (the JSON value true, nothing else; docs/keystore.md): the marking that also
    lets it hold clear keys. Unreadable or any other value: not test."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("test_only") is True


# -- the pieces ------------------------------------------------------------------------------------

#: (scheme, CVN) → (session key method, ISO 9797-1 padding method, what ends the data)
VERSIONS: dict[tuple[str, int], tuple[str, int, str]] = {
    ("Visa", 0x0A): ("none", 1, "CVR"),
    ("Visa", 0x12): ("common", 2, "IAD"),
    ("Mastercard", 0x10): ("mastercard", 2, "CVR"),
}

#: the terminal data every supported version MACs, in order (Book 2 §8.1.1 Table 28)
TERMINAL_TAGS: tuple[tuple[int, str], ...] = (
    (0x9F02, "Amount, Authorised"), (0x9F03, "Amount, Other"), (0x9F1A, "Terminal Country Code"),
    (0x95, "Terminal Verification Results"), (0x5F2A, "Transaction Currency Code"),
    (0x9A, "Transaction Date"), (0x9C, "Transaction Type"), (0x9F37, "Unpredictable Number"),
)


@dataclass(frozen=True)
class MacInput:
    tag: str  # "9F02", or "CVR" for the part of 9F10 a version takes
    name: str
    value: bytes
    source: str  # where the value came from


@dataclass(frozen=True)
class Opened:
    """Every intermediate value of one application cryptogram."""

    version: str
    option: str  # "A" or "B"
    masked_input: str  # PAN ‖ PSN as shown (PAN masked)
    y_masked: str  # the 16 digits Y, masked like the PAN
    imk: bytes
    icc_mk_raw: bytes  # before the parity adjustment
    icc_mk: bytes
    session_method: str
    r_left: bytes
    r_right: bytes
    session_key: bytes
    inputs: tuple[MacInput, ...]
    padding: int
    padded: bytes
    chain: tuple[tuple[bytes, bytes], ...]  # (block D_i, H_i = DES(K_L)[H_i-1 ⊕ D_i])
    final: bytes  # DES(K_L)[DES⁻¹(K_R)[H_n]]
    pyemv_mac: bytes  # the same MAC from pyemv
    pyemv_ac: bytes  # what pyemv's class for the version computes (the issuer host's check)
    card_ac: bytes
    card_ac_source: str


def _des(key8: bytes, block: bytes, *, decrypt: bool = False) -> bytes:
    """Single DES (a 3DES key K ‖ K ‖ K) on one block."""
    cipher = Cipher(TripleDES(key8 * 3), modes.ECB())
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(block) + op.finalize()


def _tdes(key16: bytes, block: bytes) -> bytes:
    return bytes(pyemv_tools.encrypt_tdes_ecb(key16, block))


def mask_digits(pan: str) -> str:
    """First 6 and last 4 digits, the rest ``*`` (as the trace masks PANs)."""
    return pan[:6] + "*" * max(0, len(pan) - 10) + pan[-4:] if len(pan) > 10 else "*" * len(pan)


def option_b_y(pan: str, psn: str) -> str:
    """Book 2 A1.4.2: SHA-1 over PAN ‖ PSN (left-padded with 0 to whole bytes), its
    decimal digits in order, then its letters a-f as 0-5, the first 16 of these."""
    digest = hashlib.sha1(bytes.fromhex(("0" if len(pan) % 2 else "") + pan + psn)).hexdigest()
    digits = [d for d in digest if d.isdigit()]
    letters = [str("abcdef".index(d)) for d in digest if d in "abcdef"]
    return "".join((digits + letters)[:16])


def derive_session(icc_mk: bytes, method: str, atc: bytes, un: bytes) -> tuple[bytes, bytes, bytes]:
    """(R left, R right, SK): Book 2 A1.3.1, the common session key derivation,
    with R = ATC ‖ 00…00 (EMV CSK) or ATC ‖ 00 00 ‖ UN (Mastercard SKD); ``none``
    gives the ICC master key itself (Visa CVN 10)."""
    if method == "none":
        return b"", b"", icc_mk
    r = atc + bytes(6) if method == "common" else atc + bytes(2) + un
    left, right = r[:2] + b"\xF0" + r[3:], r[:2] + b"\x0F" + r[3:]
    raw = _tdes(icc_mk, left) + _tdes(icc_mk, right)
    return left, right, bytes(pyemv_tools.adjust_key_parity(raw))


def pad(data: bytes, method: int) -> bytes:
    """ISO/IEC 9797-1 padding method 1 (zeros, none when already whole blocks) or 2 (80, zeros)."""
    if method == 2:
        data += b"\x80"
    return data + bytes(-len(data) % 8) if data or method == 2 else bytes(8)


def mac_chain(key: bytes, padded: bytes) -> tuple[tuple[tuple[bytes, bytes], ...], bytes]:
    """ISO/IEC 9797-1 algorithm 3 written out: the CBC chain under K_L, then the output transformation."""
    kl, kr = key[:8], key[8:]
    h = bytes(8)
    chain = []
    for i in range(0, len(padded), 8):
        block = padded[i : i + 8]
        h = _des(kl, bytes(a ^ b for a, b in zip(h, block, strict=True)))
        chain.append((block, h))
    return tuple(chain), _des(kl, _des(kr, h, decrypt=True))


def open_cryptogram(*, scheme: str, cvn: int, name: str, imk: bytes, pan: str, psn: str, option: str,
                    terminal: dict[int, bytes], aip: bytes, atc: bytes, iad: bytes, suffix: bytes,
                    card_ac: bytes, card_ac_source: str, pyemv_ac: bytes) -> Opened:
    """Recompute the AC step by step. ``terminal``: the CDOL1 values by tag;
    ``suffix``: what the version appends after the ATC (the CVR or the whole IAD)."""
    method, padding, tail = VERSIONS[(scheme, cvn)]
    use_b = option == "B" or (option == "auto" and len(pan) > 16)
    masked = mask_digits(pan)
    if use_b:
        y = option_b_y(pan, psn)
        y_masked = "?" * 16  # digits of a hash of the PAN: not shown
    else:
        y = (pan + psn)[-16:].zfill(16)
        y_masked = (masked + psn)[-16:].rjust(16, "0")
    yb = bytes.fromhex(y)
    raw = _tdes(imk, yb) + _tdes(imk, bytes(b ^ 0xFF for b in yb))
    icc_mk = bytes(pyemv_tools.adjust_key_parity(raw))
    un = terminal.get(0x9F37, b"")
    r_left, r_right, sk = derive_session(icc_mk, method, atc, un)
    inputs = [MacInput(f"{t:X}", n, terminal[t], "CDOL1 data (terminal)") for t, n in TERMINAL_TAGS]
    inputs += [MacInput("82", "Application Interchange Profile", aip, "GET PROCESSING OPTIONS (card)"),
               MacInput("9F36", "Application Transaction Counter", atc, "GENERATE AC response (card)")]
    if tail == "IAD":
        inputs.append(MacInput("9F10", "Issuer Application Data", iad, "GENERATE AC response (card)"))
    else:
        where = "bytes 4-7 (length 03 and CVR)" if scheme == "Visa" else "bytes 3-8"
        inputs.append(MacInput("CVR", f"Card Verification Results, 9F10 {where}", suffix,
                               "GENERATE AC response (card)"))
    data = b"".join(i.value for i in inputs)
    padded = pad(data, padding)
    chain, final = mac_chain(sk, padded)
    reference = bytes(pyemv_mac.mac_iso9797_3(sk[:8], sk[8:], data, padding, 8))
    return Opened(name, "B" if use_b else "A", f"{masked} ‖ {psn}", y_masked, imk, raw, icc_mk, method,
                  r_left, r_right, sk, tuple(inputs), padding, padded, chain, final, reference, pyemv_ac, card_ac,
                  card_ac_source)


# -- in words --------------------------------------------------------------------------------------


def _h(b: bytes) -> str:
    return b.hex().upper()


def _kcv(key: bytes) -> str:
    return _h(_tdes(key, bytes(8))[:3])


def _masked_inverse(y_masked: str) -> str:
    """Y ⊕ FF…FF digit by digit, masked digits kept masked."""
    return "".join(c if not c.isdigit() else f"{15 - int(c):X}" for c in y_masked)


def lines(o: Opened) -> list[tuple[str, str]]:
    """(kind, text) for the trace: a headline per step, details on the following lines."""
    out: list[tuple[str, str]] = []
    ref = "EMV Book 2 Annex A1.4.1 (option A)" if o.option == "A" else "EMV Book 2 Annex A1.4.2 (option B)"
    mk = [f"1. ICC master key MK-AC from the issuer master key IMK-AC, {ref}; {o.version}",
          f"input PAN ‖ PSN = {o.masked_input} (PAN masked here; the real digits go in)"]
    if o.option == "A":
        mk += [f"Y = rightmost 16 digits of PAN ‖ PSN = {o.y_masked}",
               f"IMK-AC = {_h(o.imk)} (TEST key, KCV {_kcv(o.imk)})",
               f"Z_L = 3DES(IMK-AC)[Y] = {_h(o.icc_mk_raw[:8])}",
               f"Z_R = 3DES(IMK-AC)[Y ⊕ FF…FF] (Y ⊕ FF…FF = {_masked_inverse(o.y_masked)}) = {_h(o.icc_mk_raw[8:])}"]
    else:
        mk += ["Y = the first 16 decimal digits of SHA-1(PAN ‖ PSN), letters a-f as 0-5 after them (not shown: "
               "it is a function of the whole PAN)",
               f"IMK-AC = {_h(o.imk)} (TEST key, KCV {_kcv(o.imk)})",
               f"Z_L ‖ Z_R = 3DES(IMK-AC)[Y] ‖ 3DES(IMK-AC)[Y ⊕ FF…FF] = {_h(o.icc_mk_raw)}"]
    mk.append(f"MK-AC = Z_L ‖ Z_R with odd parity per byte = {_h(o.icc_mk)} (KCV {_kcv(o.icc_mk)})")
    out.append(("note", "\n".join(mk)))
    if o.session_method == "none":
        sk = [f"2. Session key: {o.version} uses none; the AC is computed under MK-AC itself"]
    else:
        how = ("EMV common session key derivation (Book 2 A1.3.1), R = ATC ‖ 00 00 00 00 00 00"
               if o.session_method == "common" else
               "Mastercard session key derivation (M/Chip SKD), R = ATC ‖ 00 00 ‖ unpredictable number")
        sk = [f"2. Session key: {how}",
              f"R with byte 3 = F0: {_h(o.r_left)};  with byte 3 = 0F: {_h(o.r_right)}",
              f"SK-AC = 3DES(MK-AC)[{_h(o.r_left)}] ‖ 3DES(MK-AC)[{_h(o.r_right)}], odd parity "
              f"= {_h(o.session_key)} (KCV {_kcv(o.session_key)})"]
    out.append(("note", "\n".join(sk)))
    width = max(len(i.tag) for i in o.inputs)
    rows = [f"{i.tag:<{width}}  {len(i.value):>3}  {_h(i.value):<36} {i.name}; from {i.source}" for i in o.inputs]
    total = sum(len(i.value) for i in o.inputs)
    out.append(("note", "\n".join([f"3. The data MACed, in the order {o.version} takes them ({total} bytes)",
                                   f"{'tag':<{width}}  len  value", *rows])))
    how_pad = ("ISO/IEC 9797-1 method 1: zeros up to a multiple of 8 bytes" if o.padding == 1 else
               "ISO/IEC 9797-1 method 2: one 80 byte, then zeros up to a multiple of 8 bytes")
    out.append(("note", f"4. Padding, {how_pad}: {total} → {len(o.padded)} bytes, "
                        f"padding {_h(o.padded[total:]) or '(none)'}"))
    kl, kr = o.session_key[:8], o.session_key[8:]
    chain = [f"5. MAC: ISO/IEC 9797-1 algorithm 3 (Book 2 A1.2.1) under K_L = {_h(kl)}, K_R = {_h(kr)}",
             *(f"D{n} = {_h(d)}  →  H{n} = DES(K_L)[H{n - 1} ⊕ D{n}] = {_h(h)}"
               for n, (d, h) in enumerate(o.chain, 1)),
             f"AC = DES(K_L)[DES⁻¹(K_R)[H{len(o.chain)}]] = {_h(o.final)}",
             "pyemv mac_iso9797_3 over the same data and key: " + _h(o.pyemv_mac)
             + (" (the same)" if o.pyemv_mac == o.final else " (DIFFERENT: a bug in this explanation)"),
             f"pyemv {o.version} generate_ac over the same card and data: {_h(o.pyemv_ac)}"
             + (" (the same)" if o.pyemv_ac == o.final else " (DIFFERENT)")]
    out.append(("note", "\n".join(chain)))
    if not o.card_ac:
        out.append(("decision", f"6. The card sent no cryptogram to compare with: computed {_h(o.final)}"))
    elif o.final == o.card_ac:
        out.append(("check", f"6. Computed AC {_h(o.final)} equal to the card's 9F26 {_h(o.card_ac)} "
                             f"({o.card_ac_source})"))
    else:
        out.append(("decision", f"6. Computed AC {_h(o.final)} differs from the card's 9F26 {_h(o.card_ac)} "
                                f"({o.card_ac_source}): the card's keys or data are not what the issuer holds"))
    return out
