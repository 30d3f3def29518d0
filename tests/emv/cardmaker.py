"""TEST-ONLY EMV card builder: a few parameters → the complete DGI set of
``docs/dgi-map.md`` with real data, and :func:`personalize` that puts it on an
emulated card over SCP03 (GP INSTALL + STORE DATA, EMV CPS 1.1).

Everything here is test material: the issuer master keys are well-known test
values and the CA / issuer RSA keys come from ``vectors/test-ca.json`` (their
private halves are public).  Formats cited:

- ICC master key derivation, Option A: EMV 4.4 Book 2 Annex A1.4.1
  (for PANs of at most 16 digits Option B is Option A, A1.4.2 — pyemv agrees).
- Issuer public key certificate: Book 2 §5.3, Table 13.
- Signed Static Application Data (93): Book 2 §5.4, Table 7.
- ICC public key certificate: Book 2 §6.4, Table 14.
- Static data to be authenticated: Book 3 §10.3 (records of SFI 1–10 without
  their ``70`` tag and length, SFI 11–30 whole; then the values named by 9F4A).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from Crypto.Cipher import DES3
from cryptography.hazmat.primitives.asymmetric import rsa

from cardlab.cardspec import tlv
from cardlab.cardspec.scp03 import HostSession, StaticKeys, pad80

if TYPE_CHECKING:
    from cardlab.emulator import Card

VECTORS = Path(__file__).resolve().parents[2] / "vectors"

#: the card's default ISD keys (cardlab.emulator.gp.manager.DEFAULT_KEY)
GP_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
GP_KEYS = StaticKeys(GP_KEY, GP_KEY, GP_KEY, 0x30)

#: test issuer master keys (the pyemv documentation's example keys; TEST ONLY)
IMK_AC = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
IMK_SMI = bytes.fromhex("FEDCBA98765432100123456789ABCDEF")
IMK_SMC = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")

PSE_NAME = b"1PAY.SYS.DDF01"
PPSE_NAME = b"2PAY.SYS.DDF01"

CDOL1 = bytes.fromhex("9F02069F03069F1A0295055F2A029A039C019F3704")
#: DDOL used by INTERNAL AUTHENTICATE when the terminal has none (Book 3 Annex A)
DDOL = bytes.fromhex("9F3704")
#: CV rules (Book 3 Annex C3): code | 0x40 = "apply succeeding rule if this fails";
#: condition 03 = "if terminal supports the CVM"
CVM_ENCIPHERED_PIN, CVM_PLAIN_PIN, CVM_SIGNATURE, CVM_NONE = 0x04, 0x01, 0x1E, 0x1F


# -- small crypto helpers ---------------------------------------------------------------


def _tdes_ecb(key: bytes, data: bytes) -> bytes:
    return bytes(DES3.new(key, DES3.MODE_ECB).encrypt(data))


def _odd_parity(key: bytes) -> bytes:
    return bytes((b & 0xFE) | (bin(b & 0xFE).count("1") % 2 == 0) for b in key)


def derive_icc_mk(imk: bytes, pan: str, psn: str) -> bytes:
    """ICC master key, Option A (EMV Book 2 Annex A1.4.1): Y = rightmost 16
    digits of PAN ‖ PSN; MK = 3DES(IMK)[Y] ‖ 3DES(IMK)[Y ⊕ FF…], odd parity."""
    y = bytes.fromhex((pan + psn)[-16:].zfill(16))
    z = bytes(b ^ 0xFF for b in y)
    return _odd_parity(_tdes_ecb(imk, y) + _tdes_ecb(imk, z))


def des_kcv(key: bytes) -> bytes:
    return _tdes_ecb(key, bytes(8))[:3]


def _n(b: int) -> int:
    return (b.bit_length() + 7) // 8


def i2b(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


@dataclass(frozen=True)
class RsaKey:
    """An RSA key pair as integers (TEST ONLY)."""

    n: int
    e: int
    d: int
    p: int
    q: int

    @property
    def size(self) -> int:
        return _n(self.n)

    @property
    def modulus(self) -> bytes:
        return i2b(self.n, self.size)

    @property
    def exponent(self) -> bytes:
        return i2b(self.e, _n(self.e))

    def sign(self, block: bytes) -> bytes:
        """The RSA private operation on a recovered-data block (Book 2 §5.1)."""
        assert len(block) == self.size
        return i2b(pow(int.from_bytes(block, "big"), self.d, self.n), self.size)

    def crt(self) -> tuple[int, int, int, int, int]:
        """(q⁻¹ mod p, d mod (q−1), d mod (p−1), q, p): DGIs 8201..8205 in order."""
        return (pow(self.q, -1, self.p), self.d % (self.q - 1), self.d % (self.p - 1), self.q, self.p)

    @classmethod
    def from_json(cls, d: dict[str, str]) -> RsaKey:
        return cls(*(int(d[k], 16) for k in ("modulus", "exponent", "d", "p", "q")))

    @classmethod
    def generate(cls, bits: int, e: int = 3) -> RsaKey:
        k = rsa.generate_private_key(public_exponent=e, key_size=bits).private_numbers()
        return cls(k.public_numbers.n, e, k.d, k.p, k.q)


@lru_cache(maxsize=1)
def load_test_ca() -> tuple[bytes, int, RsaKey, RsaKey]:
    """(RID, CA public key index, CA key, issuer key) from vectors/test-ca.json."""
    doc = json.loads((VECTORS / "test-ca.json").read_text())
    ca = doc["ca"]
    return bytes.fromhex(ca["rid"]), int(ca["index"], 16), RsaKey.from_json(ca), RsaKey.from_json(doc["issuer"])


@lru_cache(maxsize=None)
def icc_keypair(bits: int = 1024, slot: int = 0) -> RsaKey:
    """A throw-away ICC key pair, generated once per (bits, slot) per process."""
    return RsaKey.generate(bits, 3)


# -- the profile -------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What a test says about its card; everything else is derived."""

    pan: str = "4761739001010010"
    psn: str = "01"
    expiry: str = "301231"  # YYMMDD
    effective: str = "200101"
    name: str = "CARDLAB/TEST"
    pin: str = "1234"
    pin_try_limit: int = 3
    cvn: int = 0x12
    oda: str = "CDA"  # "SDA", "DDA", "CDA" or "" (none)
    aid: bytes = bytes.fromhex("F0000000011010")  # test RID F000000001 (the test CA's)
    label: str = "CARDLAB DEBIT"
    priority: int = 1
    pdol: bytes = bytes.fromhex("9F1A02")  # b"" for no PDOL
    response_format: int = 2
    lcol: int = 0
    ucol: int = 0
    lower_cumulative: int = 0
    upper_cumulative: int = 0
    currency: int = 0x0978
    country: int = 0x0250
    default_action: bytes = b"\x00\x00"
    issuer_auth_required: bool = False
    arpc_method: int = 0  # 0: by CVN (18 → 2, others → 1)
    max_atc: int = 0xFFFF
    log: bool = False
    log_records: int = 10
    dki: int = 0x01
    icc_bits: int = 1024
    icc_slot: int = 0
    #: > 0: a distinct ICC PIN encipherment key of that size (9F2D/9F2E/9F2F, DGIs 8101–8105)
    pin_key_bits: int = 0
    #: the PIN key certificate's PAN field is another PAN (a negative case)
    pin_key_cert_pan: str = ""

    @property
    def method(self) -> int:
        return self.arpc_method or (2 if self.cvn == 0x12 else 1)

    @property
    def uses_rsa(self) -> bool:
        return self.oda in ("DDA", "CDA") or self.pin_key_bits > 0

    def mk(self) -> tuple[bytes, bytes, bytes]:
        return tuple(derive_icc_mk(k, self.pan, self.psn) for k in (IMK_AC, IMK_SMI, IMK_SMC))  # type: ignore[return-value]

    def with_(self, **kw: object) -> Profile:
        return replace(self, **kw)  # type: ignore[arg-type]


LOG_FORMAT = bytes.fromhex("9F02065F2A029A039C019F36029F2701")
LOG_SFI = 0x0B
AFL = bytes.fromhex("08010100" "10010202" "18010200")


@dataclass
class CardData:
    """The DGIs of one application plus what the tests need to check the card."""

    profile: Profile
    dgis: list[tuple[int, bytes]]
    records: dict[tuple[int, int], bytes]
    aip: bytes
    afl: bytes
    icc_key: RsaKey | None
    static_data: bytes  # the static data to be authenticated (Book 3 §10.3)
    extra: dict[str, bytes] = field(default_factory=dict)


def _bcd(value: int, length: int) -> bytes:
    return bytes.fromhex(str(value).zfill(2 * length))


def aip_for(oda: str) -> bytes:
    """AIP byte 1 (Book 3 Annex C1): b7 SDA, b6 DDA, b5 cardholder verification,
    b4 terminal risk management, b3 issuer authentication, b1 CDA."""
    base = 0x10 | 0x08 | 0x04
    return bytes((base | {"SDA": 0x40, "DDA": 0x20, "CDA": 0x21}.get(oda, 0), 0x00))


def track2(p: Profile) -> bytes:
    digits = f"{p.pan}D{p.expiry[:4]}201{'0' * 5}{'0' * 8}"
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


def cvm_list(p: Profile) -> bytes:
    rules = []
    if p.uses_rsa:
        rules.append((CVM_ENCIPHERED_PIN | 0x40, 0x03))
    rules += [(CVM_PLAIN_PIN | 0x40, 0x03), (CVM_SIGNATURE | 0x40, 0x03), (CVM_NONE, 0x03)]
    return bytes(8) + b"".join(bytes(r) for r in rules)


def cdol2(p: Profile) -> bytes:
    out = bytes.fromhex("8A02")
    if p.method == 2:
        out += bytes.fromhex("9108")  # ARPC (4) ‖ CSU (4), Book 2 §8.2.2
    return out + CDOL1


def static_data(records: dict[tuple[int, int], bytes], afl: bytes, aip: bytes) -> bytes:
    """Book 3 §10.3: records named for ODA by the AFL, then the AIP (9F4A = 82)."""
    out = b""
    for i in range(0, len(afl), 4):
        sfi, first, last, n_oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        for rec in range(first, first + n_oda):
            body = records[(sfi, rec)]
            out += tlv.parse(body)[0].value if sfi <= 10 else body
        assert first + n_oda - 1 <= last
    return out + aip


def issuer_certificate(p: Profile) -> tuple[bytes, bytes]:
    """(90, 92) per Book 2 §5.3 Table 13, signed by the test CA."""
    _rid, _index, ca, iss = load_test_ca()
    room = ca.size - 36
    modulus = iss.modulus
    leftmost, remainder = modulus[:room], modulus[room:]
    leftmost += b"\xBB" * (room - len(leftmost))
    issuer_id = bytes.fromhex(p.pan[:6] + "FF")
    body = (
        b"\x02" + issuer_id + bytes.fromhex("1235") + bytes.fromhex("000001")
        + b"\x01\x01" + bytes((iss.size, len(iss.exponent)))
    )
    # hash over items 2–10 (key field with its BB padding) ‖ remainder ‖ exponent
    digest = hashlib.sha1(body + leftmost + remainder + iss.exponent).digest()
    cert = ca.sign(b"\x6A" + body + leftmost + digest + b"\xBC")
    return cert, remainder


def icc_certificate(p: Profile, icc: RsaKey, sda_data: bytes, pan_field: str = "") -> tuple[bytes, bytes]:
    """(9F46, 9F48) per Book 2 §6.4 Table 14, signed by the test issuer key; with
    ``sda_data`` empty, the ICC PIN encipherment key certificate (9F2D, 9F2F) of
    Book 2 §7.1 (same format, no static data in the hash)."""
    iss = load_test_ca()[3]
    room = iss.size - 42
    modulus = icc.modulus
    leftmost, remainder = modulus[:room], modulus[room:]
    leftmost += b"\xBB" * (room - len(leftmost))
    pan_digits = pan_field or p.pan
    pan = bytes.fromhex(pan_digits + "F" * (20 - len(pan_digits)))
    mmyy = bytes.fromhex(p.expiry[2:4] + p.expiry[:2])
    body = b"\x04" + pan + mmyy + bytes.fromhex("000002") + b"\x01\x01" + bytes((icc.size, len(icc.exponent)))
    digest = hashlib.sha1(body + leftmost + remainder + icc.exponent + sda_data).digest()
    cert = iss.sign(b"\x6A" + body + leftmost + digest + b"\xBC")
    return cert, remainder


def signed_static_data(sda_data: bytes, dac: bytes = b"\xDA\xC1") -> bytes:
    """93 per Book 2 §5.4 Table 7, signed by the test issuer key."""
    iss = load_test_ca()[3]
    body = b"\x03\x01" + dac + b"\xBB" * (iss.size - 26)
    digest = hashlib.sha1(body + sda_data).digest()
    return iss.sign(b"\x6A" + body + digest + b"\xBC")


def pin_block(pin: str) -> bytes:
    """Offline PIN block: 2 ‖ N ‖ PIN ‖ F padding (Book 3 §6.5.12)."""
    return bytes.fromhex(("2" + format(len(pin), "X") + pin).ljust(16, "F"))


def build(p: Profile) -> CardData:
    """The complete DGI set of docs/dgi-map.md for ``p``."""
    e = tlv.encode
    mk = p.mk()
    aip = aip_for(p.oda)
    icc = icc_keypair(p.icc_bits, p.icc_slot) if p.oda in ("DDA", "CDA") else None
    pin_key = RsaKey.generate(p.pin_key_bits, 3) if p.pin_key_bits else None
    afl = AFL if pin_key is None else AFL[:-4] + bytes.fromhex("18010300")  # SFI 3 record 3: the PIN key
    _rid, ca_index, _ca, iss = load_test_ca()
    records: dict[tuple[int, int], bytes] = {}
    records[(1, 1)] = e(0x70, e(0x57, track2(p)) + e(0x5F20, p.name.encode()) + e(0x9F1F, b"0000"))
    records[(2, 1)] = e(
        0x70,
        e(0x5A, bytes.fromhex(p.pan + ("F" if len(p.pan) % 2 else "")))
        + e(0x5F24, bytes.fromhex(p.expiry)) + e(0x5F25, bytes.fromhex(p.effective))
        + e(0x5F34, bytes.fromhex(p.psn)) + e(0x5F28, _bcd(826, 2)) + e(0x5F30, bytes.fromhex("0201"))
        + e(0x9F07, bytes.fromhex("FF00")) + e(0x9F08, bytes.fromhex("0096" if p.cvn != 0x10 else "0002"))
        + e(0x9F42, _bcd(p.currency, 2)) + e(0x9F44, b"\x02")
        + e(0x8E, cvm_list(p))
        + e(0x9F0D, bytes.fromhex("F040AC8000")) + e(0x9F0E, bytes.fromhex("0010000000"))
        + e(0x9F0F, bytes.fromhex("F040AC9800")),
    )
    records[(2, 2)] = e(
        0x70, e(0x8C, CDOL1) + e(0x8D, cdol2(p)) + e(0x9F49, DDOL) + e(0x9F4A, b"\x82")
    )
    sda = static_data(records, AFL, aip)
    issuer_cert, issuer_rem = issuer_certificate(p)
    rec31 = e(0x8F, bytes((ca_index,))) + e(0x90, issuer_cert) + e(0x9F32, iss.exponent)
    if issuer_rem:
        rec31 += e(0x92, issuer_rem)
    records[(3, 1)] = e(0x70, rec31)
    if p.oda == "SDA":
        records[(3, 2)] = e(0x70, e(0x93, signed_static_data(sda)))
    elif icc is not None:
        cert, rem = icc_certificate(p, icc, sda)
        body = e(0x9F46, cert) + e(0x9F47, icc.exponent)
        if rem:
            body += e(0x9F48, rem)
        records[(3, 2)] = e(0x70, body)
    else:
        records[(3, 2)] = e(0x70, e(0x9F4A, b"\x82"))
    if pin_key is not None:  # Book 2 §7.1: certificate over the PIN key, no static data
        cert, rem = icc_certificate(p, pin_key, b"", p.pin_key_cert_pan)
        records[(3, 3)] = e(0x70, e(0x9F2D, cert) + e(0x9F2E, pin_key.exponent) + (e(0x9F2F, rem) if rem else b""))
    fci = (
        e(0x50, p.label.encode()) + e(0x87, bytes((p.priority,)))
        + (e(0x9F38, p.pdol) if p.pdol else b"")
        + e(0x5F2D, b"en") + e(0x9F11, b"\x01") + e(0x9F12, p.label.encode())
    )
    if p.log:
        fci += e(0xBF0C, e(0x9F4D, bytes((LOG_SFI, p.log_records))))
    risk = (
        e(0xDF01, bytes((p.cvn,))) + e(0xDF02, bytes((p.dki,)))
        + e(0x9F14, bytes((p.lcol,))) + e(0x9F23, bytes((p.ucol,)))
        + e(0xDF11, _bcd(p.lower_cumulative, 6)) + e(0xDF12, _bcd(p.upper_cumulative, 6))
        + e(0x9F42, _bcd(p.currency, 2)) + e(0xDF17, b"\x02") + e(0x9F52, p.default_action)
        + e(0xDF13, b"\x01" if p.issuer_auth_required else b"\x00")
        + e(0xDF14, bytes((p.method,))) + e(0xDF15, i2b(p.max_atc, 2))
        + e(0xDF16, bytes((p.response_format,)))
    )
    if p.log:
        risk += e(0x9F4D, bytes((LOG_SFI, p.log_records))) + e(0x9F4F, LOG_FORMAT)
    objects = e(0x5F28, _bcd(826, 2)) + e(0x9F42, _bcd(p.currency, 2))
    if p.log:
        objects += e(0x9F4F, LOG_FORMAT)
    dgis: list[tuple[int, bytes]] = [(0x0100 * sfi + rec, body) for (sfi, rec), body in sorted(records.items())]
    dgis += [
        (0x9102, fci),
        (0x9104, e(0x82, aip) + e(0x94, afl)),
        (0x9000, b"".join(des_kcv(k) for k in mk)),
        (0x9010, bytes((p.pin_try_limit, p.pin_try_limit))),
        (0x0D01, risk),
        (0x0E01, objects),
        (0x8000, b"".join(mk)),
        (0x8010, pin_block(p.pin)),
    ]
    if icc is not None:
        size = (icc.size + 1) // 2
        dgis += [(0x8201 + i, i2b(v, size)) for i, v in enumerate(icc.crt())]
    if pin_key is not None:
        size = (pin_key.size + 1) // 2
        dgis += [(0x8101 + i, i2b(v, size)) for i, v in enumerate(pin_key.crt())]
    extra = {"pin_key_modulus": pin_key.modulus} if pin_key is not None else {}
    return CardData(p, dgis, records, aip, afl, icc, sda, extra)


# -- personalization over SCP03 ----------------------------------------------------------


def _lv(b: bytes) -> bytes:
    return bytes((len(b),)) + b


def _apdu(header: str, data: bytes) -> bytes:
    return bytes.fromhex(header) + _lv(data) + b"\x00"


class PersoError(AssertionError):
    pass


def _ok(resp: bytes, what: str) -> bytes:
    if resp[-2:] != b"\x90\x00":
        raise PersoError(f"{what}: SW {resp[-2:].hex().upper()}")
    return resp[:-2]


def emv_classes() -> dict[str, Any]:
    """The EMV application class and, when they exist, the PSE / PPSE classes."""
    from cardlab.emulator.applets.emv.applet import EmvApplet

    out: dict[str, Any] = {"emv": EmvApplet}
    try:
        from cardlab.emulator.applets import pse
    except ImportError:
        return out
    for name in dir(pse):
        klass = getattr(pse, name)
        if isinstance(klass, type) and getattr(klass, "MODULE_AID", None):
            if "PPSE" in name.upper() or "PROXIMITY" in name.upper():
                out["ppse"] = klass
            elif "PSE" in name.upper() or "DIRECTORY" in name.upper():
                out["pse"] = klass
    return out


def _install(hs: HostSession, klass: Any, aid: bytes) -> bytes:
    data = _lv(klass.LOAD_FILE_AID) + _lv(klass.MODULE_AID) + _lv(aid) + _lv(b"\x00") + _lv(bytes.fromhex("C900")) + b"\x00"
    return hs.send(_apdu("80E60C00", data))


BLOCK = 200  # plaintext bytes per STORE DATA (level 33 adds padding and an 8-byte MAC)


def store_blocks(dgis: list[tuple[int, bytes]]) -> list[tuple[bool, bytes]]:
    """Whole DGIs grouped into blocks; secret DGIs (8xxx) alone, to be encrypted."""
    blocks: list[tuple[bool, bytes]] = []
    current = b""
    for dgi, value in dgis:
        enc = tlv.encode_dgi(dgi, value)
        if 0x8000 <= dgi <= 0x8FFF:
            blocks.append((True, enc))
            continue
        if current and len(current) + len(enc) > BLOCK:
            blocks.append((False, current))
            current = b""
        current += enc
    if current:
        blocks.append((False, current))
    # plain blocks first, secrets after, so the last block may be either
    return [b for b in blocks if not b[0]] + [b for b in blocks if b[0]]


def card_keys(card: object) -> StaticKeys:
    """The ISD key set the emulated card holds (the card's own, e.g. diversified from a KMC),
    else the well-known test keys."""
    entries = getattr(getattr(card, "state", None), "keys", None) or []
    by_id = {e.kid: e for e in entries if e.kvn == entries[0].kvn} if entries else {}
    if all(k in by_id for k in (1, 2, 3)):
        return StaticKeys(by_id[1].value, by_id[2].value, by_id[3].value, entries[0].kvn)
    return GP_KEYS


def personalize(card: object, data: CardData | list[tuple[int, bytes]], aid: bytes | None = None,
                *, directories: bool = True) -> None:
    """Install the EMV instance ``aid`` (and the PSE/PPSE when their classes
    exist and are not yet on the card), then INSTALL [for personalization]
    and STORE DATA the DGIs inside an SCP03 session at level 33."""
    dgis = data.dgis if isinstance(data, CardData) else data
    if aid is None:
        assert isinstance(data, CardData)
        aid = data.profile.aid
    transmit = card.transmit  # type: ignore[attr-defined]
    hs = HostSession(transmit, card_keys(card))
    hs.open(0x33)
    classes = emv_classes()
    _ok(_install(hs, classes["emv"], aid), "INSTALL [for install and make selectable] EMV")
    if directories:
        registry = {rec.aid for rec in card.state.instances}  # type: ignore[attr-defined]
        for key, name in (("pse", PSE_NAME), ("ppse", PPSE_NAME)):
            if key in classes and name not in registry:
                _ok(_install(hs, classes[key], name), f"INSTALL {key}")
    perso = b"\x00\x00" + _lv(aid) + b"\x00\x00\x00"
    _ok(hs.send(_apdu("80E62000", perso)), "INSTALL [for personalization]")
    blocks = store_blocks(dgis)
    for i, (secret, block) in enumerate(blocks):
        p1 = 0x08 | (0x60 if secret else 0x00) | (0x80 if i == len(blocks) - 1 else 0x00)
        body = hs.dek_encrypt(pad80(block)) if secret else block
        _ok(hs.send(_apdu(f"80E2{p1:02X}{i:02X}", body)), f"STORE DATA block {i}")


def make_card(*profiles: Profile) -> tuple[Card, list[CardData]]:
    """A new emulated card with one personalized EMV instance per profile."""
    from cardlab.emulator import Card

    card = Card.create()
    made = []
    for p in profiles:
        cd = build(p)
        personalize(card, cd)
        made.append(cd)
    return card, made
