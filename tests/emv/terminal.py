"""A small TEST-ONLY EMV terminal and issuer host (the independent tester is
another issue).  Own BER-TLV and DOL handling, ODA with plain integer RSA
(EMV 4.4 Book 2 §5–§7), cryptograms, ARPCs and script MACs through pyemv.

Nothing here imports the emulator or cardspec: it talks to ``transmit``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyemv import cvn as pyemv_cvn

Transmit = Callable[[bytes], bytes]


class CardError(AssertionError):
    """The card answered something a terminal cannot accept."""


# -- BER-TLV and DOLs (EMV Book 3 Annex B, §5.4) ---------------------------------------


def parse_tlv(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(data):
        if data[i] in (0x00, 0xFF):  # padding between objects
            i += 1
            continue
        start = i
        i += 1
        if data[start] & 0x1F == 0x1F:
            while data[i] & 0x80:
                i += 1
            i += 1
        tag = int.from_bytes(data[start:i], "big")
        n = data[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(data[i : i + k], "big")
            i += k
        if i + n > len(data):
            raise CardError(f"TLV {tag:X} runs past the end")
        out.append((tag, data[i : i + n]))
        i += n
    return out


def constructed(tag: int) -> bool:
    return bool(tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")[0] & 0x20)


def flatten(data: bytes, into: dict[int, bytes] | None = None) -> dict[int, bytes]:
    """Every primitive (and constructed) object at any depth, tag → value."""
    out = {} if into is None else into
    for tag, value in parse_tlv(data):
        out[tag] = value
        if constructed(tag):
            flatten(value, out)
    return out


def tlv(tag: int, value: bytes) -> bytes:
    t = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    n = len(value)
    ln = bytes((n,)) if n < 0x80 else (b"\x81" + bytes((n,)) if n < 256 else b"\x82" + n.to_bytes(2, "big"))
    return t + ln + value


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    out, i = [], 0
    while i < len(dol):
        start = i
        i += 1
        if dol[start] & 0x1F == 0x1F:
            while dol[i] & 0x80:
                i += 1
            i += 1
        out.append((int.from_bytes(dol[start:i], "big"), dol[i]))
        i += 1
    return out


def build_dol(dol: bytes, values: dict[int, bytes]) -> bytes:
    """Book 3 §5.4: each value cut or left-padded with zeros to its length."""
    out = b""
    for tag, n in parse_dol(dol):
        v = values.get(tag, b"")
        out += v[-n:] if len(v) >= n else bytes(n - len(v)) + v
    return out


# -- RSA recovery (Book 2 §5.1, plain integers) -------------------------------------------


def recover(data: bytes, n: int, e: int) -> bytes:
    size = (n.bit_length() + 7) // 8
    if len(data) != size:
        raise CardError("signed data length differs from the key modulus")
    return pow(int.from_bytes(data, "big"), e, n).to_bytes(size, "big")


def _check_frame(rec: bytes, fmt: int, what: str) -> None:
    if rec[0] != 0x6A or rec[-1] != 0xBC or rec[1] != fmt:
        raise CardError(f"{what}: bad header/trailer/format")


@dataclass
class Terminal:
    transmit: Transmit
    ca_keys: dict[tuple[bytes, int], tuple[int, int]] = field(default_factory=dict)
    amount: int = 1000
    values: dict[int, bytes] = field(default_factory=dict)
    card: dict[int, bytes] = field(default_factory=dict)
    log: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        defaults = {
            0x9F02: bytes.fromhex(f"{self.amount:012d}"), 0x9F03: bytes(6), 0x9F1A: b"\x02\x50",
            0x95: bytes(5), 0x5F2A: b"\x09\x78", 0x9A: bytes.fromhex("250601"), 0x9C: b"\x00",
            0x9F37: os.urandom(4), 0x9F35: b"\x22", 0x9F33: bytes.fromhex("E0F8C8"), 0x8A: b"00",
        }
        self.values = {**defaults, **self.values}
        self.reset()

    def reset(self) -> None:
        self.card = {}
        self.records: list[tuple[int, int, bytes]] = []
        self.pdol_data = b""
        self.cdol1_data = b""
        self.aid = b""
        self.icc_key: tuple[int, int] | None = None
        self.values[0x9F37] = os.urandom(4)

    # -- APDUs -------------------------------------------------------------------------
    def send(self, apdu: bytes) -> tuple[bytes, int]:
        resp = self.transmit(apdu)
        if len(resp) < 2:
            raise CardError("response shorter than a status word")
        self.log.append((apdu[:4], resp[-2:]))  # headers and SWs only: no PINs in logs
        data, sw = resp[:-2], int.from_bytes(resp[-2:], "big")
        if sw >> 8 == 0x61:
            more, sw = self.send(bytes.fromhex("00C00000") + bytes((sw & 0xFF,)))
            data += more
        elif sw >> 8 == 0x6C:
            return self.send(apdu[:4] + bytes((sw & 0xFF,)))
        return data, sw

    def ok(self, apdu: bytes, what: str) -> bytes:
        data, sw = self.send(apdu)
        if sw != 0x9000:
            raise CardError(f"{what}: SW {sw:04X}")
        return data

    @staticmethod
    def case4(header: str, data: bytes) -> bytes:
        return bytes.fromhex(header) + bytes((len(data),)) + data + b"\x00"

    # -- selection (Book 1 §12) ----------------------------------------------------------
    def select(self, aid: bytes, next_occurrence: bool = False) -> tuple[bytes, int]:
        p2 = "02" if next_occurrence else "00"
        data, sw = self.send(self.case4("00A404" + p2, aid))
        if sw in (0x9000, 0x6283):
            self.reset()
            self.aid = aid
            fci = flatten(data)
            self.card.update(fci)
            self.aid = fci.get(0x84, aid)
        return data, sw

    def ppse(self) -> list[tuple[bytes, bytes, int]]:
        data = self.ok(self.case4("00A40400", b"2PAY.SYS.DDF01"), "SELECT PPSE")
        entries = []
        for tag, value in parse_tlv(flatten(data).get(0xBF0C, b"")):
            if tag == 0x61:
                d = flatten(value)
                entries.append((d[0x4F], d.get(0x50, b""), d.get(0x87, b"\x00")[0]))
        return entries

    def pse(self) -> list[tuple[bytes, bytes, int]]:
        data = self.ok(self.case4("00A40400", b"1PAY.SYS.DDF01"), "SELECT PSE")
        sfi = flatten(data)[0x88][0]
        entries: list[tuple[bytes, bytes, int]] = []
        rec = 1
        while True:
            body, sw = self.send(bytes((0x00, 0xB2, rec, (sfi << 3) | 4, 0)))
            if sw == 0x6A83:
                return entries
            if sw != 0x9000:
                raise CardError(f"READ RECORD PSE {rec}: SW {sw:04X}")
            for tag, value in parse_tlv(flatten(body).get(0x70, b"")):
                if tag == 0x61:
                    d = flatten(value)
                    entries.append((d[0x4F], d.get(0x50, b""), d.get(0x87, b"\x00")[0]))
            rec += 1

    # -- GPO, records (Book 3 §10.1–10.2) -----------------------------------------------
    def gpo(self) -> tuple[bytes, bytes]:
        self.pdol_data = build_dol(self.card.get(0x9F38, b""), self.values)
        data = self.ok(self.case4("80A80000", tlv(0x83, self.pdol_data)), "GET PROCESSING OPTIONS")
        (tag, value), = parse_tlv(data)
        if tag == 0x80:
            aip, afl = value[:2], value[2:]
        else:
            d = flatten(data)
            aip, afl = d[0x82], d[0x94]
        self.card[0x82], self.card[0x94] = aip, afl
        return aip, afl

    def read_records(self) -> dict[int, bytes]:
        afl = self.card[0x94]
        self.static = b""
        for i in range(0, len(afl), 4):
            sfi, first, last, n_oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
            for rec in range(first, last + 1):
                body = self.ok(bytes((0x00, 0xB2, rec, (sfi << 3) | 4, 0)), f"READ RECORD {sfi}/{rec}")
                (tag, value), = parse_tlv(body)
                if tag != 0x70:
                    raise CardError("record is not a 70 template")
                self.records.append((sfi, rec, body))
                flatten(value, self.card)
                if rec < first + n_oda:
                    self.static += value if sfi <= 10 else body
        if self.card.get(0x9F4A) == b"\x82":
            self.static += self.card[0x82]
        return self.card

    # -- ODA (Book 2 §5, §6) ----------------------------------------------------------
    def issuer_key(self) -> tuple[int, int]:
        rid, index = self.aid[:5], self.card[0x8F][0]
        n_ca, e_ca = self.ca_keys[(rid, index)]
        rec = recover(self.card[0x90], n_ca, e_ca)
        _check_frame(rec, 0x02, "issuer certificate")
        n_i, e_len = rec[13], rec[14]
        field_ = rec[15:-21]
        remainder = self.card.get(0x92, b"")
        exponent = self.card[0x9F32]
        if hashlib.sha1(rec[1:15] + field_ + remainder + exponent).digest() != rec[-21:-1]:
            raise CardError("issuer certificate hash")
        pan = self.card[0x5A].hex().upper().rstrip("F")
        if not pan.startswith(rec[2:6].hex().upper().rstrip("F")):
            raise CardError("issuer identifier does not match the PAN")
        modulus = (field_ + remainder)[:n_i]
        assert len(exponent) == e_len
        return int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big")

    def sda(self) -> bytes:
        n, e = self.issuer_key()
        rec = recover(self.card[0x93], n, e)
        _check_frame(rec, 0x03, "signed static application data")
        if hashlib.sha1(rec[1:-21] + self.static).digest() != rec[-21:-1]:
            raise CardError("SDA hash")
        return rec[3:5]  # data authentication code

    def icc_public_key(self) -> tuple[int, int]:
        n_i, e_i = self.issuer_key()
        rec = recover(self.card[0x9F46], n_i, e_i)
        _check_frame(rec, 0x04, "ICC certificate")
        n_ic = rec[19]
        field_ = rec[21:-21]
        remainder = self.card.get(0x9F48, b"")
        exponent = self.card[0x9F47]
        if hashlib.sha1(rec[1:21] + field_ + remainder + exponent + self.static).digest() != rec[-21:-1]:
            raise CardError("ICC certificate hash")
        if rec[2:12].hex().upper().rstrip("F") != self.card[0x5A].hex().upper().rstrip("F"):
            raise CardError("ICC certificate PAN")
        self.icc_key = (int.from_bytes((field_ + remainder)[:n_ic], "big"), int.from_bytes(exponent, "big"))
        return self.icc_key

    def _sdad(self, sdad: bytes, terminal_data: bytes) -> bytes:
        """Recover and check Signed Dynamic Application Data (Table 17); the ICC dynamic data."""
        n, e = self.icc_key or self.icc_public_key()
        rec = recover(sdad, n, e)
        _check_frame(rec, 0x05, "signed dynamic application data")
        if hashlib.sha1(rec[1:-21] + terminal_data).digest() != rec[-21:-1]:
            raise CardError("SDAD hash")
        return rec[4 : 4 + rec[3]]

    def dda(self) -> bytes:
        ddol = self.card.get(0x9F49, b"\x9F\x37\x04")
        ddol_data = build_dol(ddol, self.values)
        data = self.ok(self.case4("00880000", ddol_data), "INTERNAL AUTHENTICATE")
        (tag, value), = parse_tlv(data)
        sdad = value if tag == 0x80 else flatten(data)[0x9F4B]
        dyn = self._sdad(sdad, ddol_data)
        return dyn[1 : 1 + dyn[0]]  # ICC dynamic number

    # -- CVM (Book 3 §10.5, Book 2 §7) -----------------------------------------------
    def verify_pin(self, pin: str, enciphered: bool = False) -> int:
        block = bytes.fromhex(("2" + format(len(pin), "X") + pin).ljust(16, "F"))
        if not enciphered:
            return self.send(bytes.fromhex("0020008008") + block)[1]
        challenge = self.ok(bytes.fromhex("0084000000"), "GET CHALLENGE")
        n, e = self.icc_key or self.icc_public_key()
        size = (n.bit_length() + 7) // 8
        plain = b"\x7F" + block + challenge + os.urandom(size - 17)
        cipher = pow(int.from_bytes(plain, "big"), e, n).to_bytes(size, "big")
        return self.send(bytes.fromhex("00200088") + bytes((size,)) + cipher)[1]

    # -- GENERATE AC (Book 3 §6.5.5, Book 2 §6.6 for CDA) ----------------------------
    def generate_ac(self, p1: int, second: bool = False, extra: dict[int, bytes] | None = None) -> dict[int, bytes]:
        values = {**self.values, **(extra or {})}
        dol = self.card[0x8D if second else 0x8C]
        dol_data = build_dol(dol, values)
        if not second:
            self.cdol1_data = dol_data
        data, sw = self.send(self.case4(f"80AE{p1:02X}00", dol_data))
        if sw != 0x9000:
            raise CardError(f"GENERATE AC: SW {sw:04X}")
        (tag, value), = parse_tlv(data)
        if tag == 0x80:
            out = {0x9F27: value[:1], 0x9F36: value[1:3], 0x9F26: value[3:11], 0x9F10: value[11:]}
        else:
            out = dict(parse_tlv(value))
        if 0x9F4B in out:  # CDA (Book 2 §6.6.2)
            rest = b"".join(tlv(t, v) for t, v in parse_tlv(value) if t != 0x9F4B)
            hashed = self.pdol_data + self.cdol1_data + (dol_data if second else b"") + rest
            dyn = self._sdad(out[0x9F4B], values[0x9F37])
            k = dyn[0]
            cid, ac, tdhc = dyn[1 + k : 2 + k], dyn[2 + k : 10 + k], dyn[10 + k : 30 + k]
            if cid != out[0x9F27]:
                raise CardError("CDA: CID in the signature differs")
            if hashlib.sha1(hashed).digest() != tdhc:
                raise CardError("CDA: transaction data hash code")
            out[0x9F26] = ac
            out[0xDF4C] = b"CDA ok"
        out[0xDF01] = dol_data
        return out

    def external_authenticate(self, data: bytes) -> int:
        return self.send(self.case4("00820000", data)[:-1])[1]

    def get_data(self, tag: int) -> tuple[bytes, int]:
        return self.send(bytes((0x80, 0xCA, tag >> 8, tag & 0xFF, 0)))

    def start(self, aid: bytes) -> tuple[bytes, bytes]:
        """SELECT, GPO and READ RECORD: the application's data ready in :attr:`card`."""
        _, sw = self.select(aid)
        if sw not in (0x9000, 0x6283):
            raise CardError(f"SELECT: SW {sw:04X}")
        aip, afl = self.gpo()
        self.read_records()
        return aip, afl


# -- the issuer host (pyemv) -----------------------------------------------------------------

CID_AAC, CID_TC, CID_ARQC = 0x00, 0x40, 0x80
PYEMV = {0x0A: pyemv_cvn.VisaCVN10, 0x12: pyemv_cvn.VisaCVN18, 0x10: pyemv_cvn.MasterCardCVN16}


@dataclass
class Issuer:
    """The issuer's host for one card: ARQC/TC/AAC check, ARPC, script commands."""

    cvn: int
    imk_ac: bytes
    imk_smi: bytes
    imk_smc: bytes
    pan: str
    psn: str
    script_count: int = 0

    def __post_init__(self) -> None:
        self.crypto: Any = PYEMV[self.cvn](self.imk_ac, self.imk_smi, self.imk_smc, self.pan, self.psn)

    def cvr_input(self, iad: bytes) -> bytes:
        """What of 9F10 the cryptogram covers: VIS CVR (IAD bytes 4–7, with its
        length byte) for CVN 10, the whole IAD for CVN 18, the M/Chip CVR (IAD
        bytes 3–8) for CVN 16."""
        return {0x0A: iad[3:7], 0x12: iad, 0x10: iad[2:8]}[self.cvn]

    def expected_ac(self, dol_values: dict[int, bytes], aip: bytes, resp: dict[int, bytes]) -> bytes:
        v = dol_values
        return bytes(self.crypto.generate_ac(
            v[0x9F02], v[0x9F03], v[0x9F1A], v[0x95], v[0x5F2A], v[0x9A], v[0x9C], v[0x9F37],
            aip, resp[0x9F36], self.cvr_input(resp[0x9F10]),
        ))

    def arpc(self, arqc: bytes, atc: bytes, approve: bool = True) -> bytes:
        """Issuer authentication data (91): method 1 ARPC ‖ ARC, method 2 ARPC ‖ CSU."""
        if self.cvn == 0x12:
            csu = bytes.fromhex("00800000" if approve else "00000000")
            return bytes(self.crypto.generate_arpc(arqc, atc, csu)) + csu
        arc = b"00" if approve else b"05"
        return bytes(self.crypto.generate_arpc(arqc, arc)) + arc

    def _sm_ac(self, ac: bytes) -> bytes:
        """Mastercard: the AC + n for the n-th script command of a transaction (pyemv)."""
        if self.cvn != 0x10:
            return ac
        return ((int.from_bytes(ac, "big") + self.script_count) % (1 << 64)).to_bytes(8, "big")

    def script(self, ins: int, ac: bytes, atc: bytes, p1: int = 0, p2: int = 0, data: bytes = b"") -> bytes:
        """A secured script command: CLA 84, data ‖ 8-byte MAC (pyemv generate_command_mac)."""
        header = bytes((0x84, ins, p1, p2, len(data) + 8))
        mac: bytes = self.crypto.generate_command_mac(header, self._sm_ac(ac), atc, data)
        self.script_count += 1
        return header + data + mac

    def pin_change(self, new_pin: str, ac: bytes, atc: bytes) -> bytes:
        cmd: bytes = self.crypto.generate_pin_change_command(new_pin, self._sm_ac(ac), atc)
        self.script_count += 1
        return cmd
