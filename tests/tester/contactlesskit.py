"""A contactless card DOUBLE for the tester's Entry Point and kernel tests (test only).

It answers as the public books describe a card: PPSE with 9F2A, SELECT with a PDOL,
kernel 3 (Book C-3) GPO with the cryptogram, CTQ and fDDA v01 signature (9F69, 9F4B),
kernel 2 (Book C-2) GPO with an EMV-mode AIP, READ RECORD, GENERATE AC with CDA.
Keys, certificates and records come from tests/emv/cardmaker.py (test CA); the
cryptogram is pyemv's Visa CVN 18 under cardmaker's TEST IMK-AC.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyemv.cvn import VisaCVN18

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "emv"))

import cardmaker  # noqa: E402
from cardmaker import IMK_AC, IMK_SMC, IMK_SMI, Profile, build, icc_certificate, static_data  # noqa: E402

from cardlab.tester import tlv  # noqa: E402
from cardlab.tester.capk import CaKeyList  # noqa: E402
from cardlab.tester.contactless.reader import parse_reader  # noqa: E402
from cardlab.tester.terminal import CaKey, TerminalProfile, load_terminal  # noqa: E402

e = tlv.encode
AID3 = bytes.fromhex("F0000000013010")
AID2 = bytes.fromhex("F0000000014010")
PDOL3 = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
PDOL2 = bytes.fromhex("9F1A02")
ROOT = Path(__file__).resolve().parents[2]


def cl_terminal(**reader: Any) -> TerminalProfile:
    """The default terminal with the test CA and a contactless reader for AID3 (kernel 3), AID2 (kernel 2)."""
    t = load_terminal()
    rid, index, ca, _iss = cardmaker.load_test_ca()
    t.ca_keys = [CaKey(rid, index, ca.n, ca.e, "")]
    t.currency = 978
    doc: dict[str, Any] = {"online_capable": True, "contact_chip": True, "ttq": "36000080",
                           "transaction_limit": 100000, "floor_limit": 5000, "cvm_limit": 5000,
                           "combinations": [{"aid": AID3.hex(), "kernel": 3}, {"aid": AID2.hex(), "kernel": 2}]}
    doc.update(reader)
    t.contactless = parse_reader(doc)
    return t


@dataclass
class ContactlessCard:
    kernel: int = 3
    ctq: bytes = b"\x20\x00"
    fdda: bool = True
    offline_limit: int = 5000  # the card approves offline (TC) at or below this amount, if the TTQ allows
    ppse_kernel: bytes | None = None  # 9F2A in the PPSE (None: the kernel's own id)
    priority: int = 1
    gpo_sw: int = 0x9000
    omit_9f69: bool = False
    tamper_sdad: bool = False
    atc: int = 0x10
    extra_entries: list[bytes] = field(default_factory=list)
    aip2: bytes | None = None
    # set up in __post_init__
    profile: Profile = field(init=False)
    data: Any = field(init=False)
    answers: list[tuple[bytes, bytes]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        aid = AID3 if self.kernel == 3 else AID2
        self.profile = Profile(aid=aid, oda="DDA" if self.kernel == 3 else "CDA",
                               pdol=PDOL3 if self.kernel == 3 else PDOL2, pan="4761739001010010")
        self.data = build(self.profile)
        self.records = dict(self.data.records)
        self.aip = self.data.aip if self.kernel == 3 else (self.aip2 or bytes((self.data.aip[0], 0x80)))
        if self.kernel == 2:  # the ICC certificate signs the static data with this AIP
            cert, rem = icc_certificate(self.profile, self.data.icc_key, static_data(self.records, self.data.afl, self.aip))
            self.records[(3, 2)] = e(0x70, e(0x9F46, cert) + e(0x9F47, self.data.icc_key.exponent)
                                     + (e(0x9F48, rem) if rem else b""))
        self.pdol = self.profile.pdol
        self.crypto = VisaCVN18(IMK_AC, IMK_SMI, IMK_SMC, self.profile.pan, self.profile.psn)
        self.pdol_values: dict[int, bytes] = {}
        self.gac: dict[int, bytes] = {}

    # -- the card -----------------------------------------------------------------------
    def atr(self) -> bytes:
        hist = bytes.fromhex("8073C821")  # ISO 14443-4 Type A ATS historical bytes
        body = bytes((0x80 | len(hist), 0x80, 0x01)) + hist
        tck = 0
        for b in body:
            tck ^= b
        return b"\x3B" + body + bytes((tck,))  # PC/SC Part 3 contactless form

    def transmit(self, apdu: bytes) -> bytes:
        resp = self._answer(apdu)
        self.answers.append((apdu, resp))
        return resp

    def _aid(self) -> bytes:
        return self.profile.aid

    def _answer(self, apdu: bytes) -> bytes:
        ins, p1, p2 = apdu[1], apdu[2], apdu[3]
        if ins == 0xA4:
            name = apdu[5:5 + apdu[4]]
            if name == b"2PAY.SYS.DDF01":
                kid = self.ppse_kernel if self.ppse_kernel is not None else bytes((self.kernel,))
                entry = e(0x4F, self._aid()) + e(0x50, b"TEST CL") + e(0x87, bytes((self.priority,)))
                if kid:
                    entry += e(0x9F2A, kid)
                body = e(0x61, entry) + b"".join(self.extra_entries)
                return e(0x6F, e(0x84, name) + e(0xA5, e(0xBF0C, body))) + b"\x90\x00"
            if name == self._aid():
                return e(0x6F, e(0x84, name) + e(0xA5, e(0x50, b"TEST CL") + e(0x9F38, self.pdol))) + b"\x90\x00"
            return b"\x6A\x82"
        if ins == 0xA8:
            if self.gpo_sw != 0x9000:
                return self.gpo_sw.to_bytes(2, "big")
            data = apdu[5:5 + apdu[4]]
            self.pdol_values = _split(self.pdol, tlv.parse(data)[0].value)
            self.atc += 1
            return (self._gpo3() if self.kernel == 3 else e(0x77, e(0x82, self.aip) + e(0x94, self.data.afl))) + b"\x90\x00"
        if ins == 0xB2:
            rec = self.records.get((p2 >> 3, p1))
            return rec + b"\x90\x00" if rec is not None else b"\x6A\x83"
        if ins == 0xAE:
            return self._generate_ac(apdu) + b"\x90\x00"
        if ins == 0xCA:
            return b"\x6A\x88"
        return b"\x6D\x00"

    def _ac(self, v: dict[int, bytes], iad: bytes, aip: bytes) -> bytes:
        z = lambda t, n: v.get(t, bytes(n))  # noqa: E731
        return bytes(self.crypto.generate_ac(z(0x9F02, 6), z(0x9F03, 6), z(0x9F1A, 2), z(0x95, 5), z(0x5F2A, 2),
                                             z(0x9A, 3), z(0x9C, 1), z(0x9F37, 4), aip, self.atc.to_bytes(2, "big"),
                                             iad))

    def _gpo3(self) -> bytes:
        v = self.pdol_values
        ttq = v.get(0x9F66, bytes(4))
        amount = int(v.get(0x9F02, bytes(6)).hex())
        offline = not ttq[1] & 0x80 and amount <= self.offline_limit and self.fdda
        cid = 0x40 if offline else 0x80
        cvr = bytes((0x03, 0x90 if offline else 0xA0, 0x00, 0x00))  # CVR byte 2 b6-5: 01 TC, 10 ARQC
        iad = bytes((0x06, 0x01, 0x12)) + cvr + bytes.fromhex("0F") + bytes(15)
        atc = self.atc.to_bytes(2, "big")
        out = (e(0x82, self.aip) + e(0x94, self.data.afl) + e(0x9F36, atc) + e(0x9F26, self._ac(v, iad, self.aip))
               + e(0x9F27, bytes((cid,))) + e(0x9F10, iad) + e(0x9F6C, self.ctq)
               + e(0x57, cardmaker.track2(self.profile)) + e(0x5F34, bytes.fromhex(self.profile.psn)))
        if self.fdda and offline:
            cad = b"\x01" + bytes.fromhex("A1B2C3D4") + self.ctq
            tdd = v.get(0x9F37, b"") + v.get(0x9F02, b"") + v.get(0x5F2A, b"") + cad
            sdad = self._sign(b"\x02" + atc, tdd)
            if self.tamper_sdad:
                sdad = sdad[:-1] + bytes((sdad[-1] ^ 1,))
            if not self.omit_9f69:
                out += e(0x9F69, cad)
            out += e(0x9F4B, sdad)
        return e(0x77, out)

    def _sign(self, dynamic: bytes, terminal_data: bytes) -> bytes:
        """SDAD (Book 2 §6.5 Table 17): 6A 05 01 Ld dynamic pad(BB) hash BC."""
        key = self.data.icc_key
        n = key.size
        body = b"\x05\x01" + bytes((len(dynamic),)) + dynamic
        body += b"\xBB" * (n - 22 - len(body))
        digest = hashlib.sha1(body + terminal_data).digest()
        return key.sign(b"\x6A" + body + digest + b"\xBC")

    def _generate_ac(self, apdu: bytes) -> bytes:
        p1 = apdu[2]
        data = apdu[5:5 + apdu[4]]
        cdol = tlv.flatten(self.records[(2, 2)][0:]).get(0x8C, b"")
        v = _split(cdol, data)
        self.atc += 1
        ask = p1 & 0xC0
        amount = int(v.get(0x9F02, bytes(6)).hex() or "0")
        cid = 0x40 if ask == 0x40 and amount <= self.offline_limit else (0x00 if ask == 0x00 else 0x80)
        iad = bytes((0x06, 0x01, 0x12, 0x03, {0x40: 0x90, 0x80: 0xA0, 0x00: 0x80}[cid], 0x00, 0x00, 0x0F)) + bytes(15)
        ac = self._ac(v, iad, self.aip)
        atc = self.atc.to_bytes(2, "big")
        if p1 & 0x10 and cid != 0x00:  # CDA (Book 2 §6.6.1)
            rest = e(0x9F27, bytes((cid,))) + e(0x9F36, atc) + e(0x9F10, iad)
            tdhc = hashlib.sha1(_pdol_data(self) + data + rest).digest()
            dyn = b"\x02" + atc + bytes((cid,)) + ac + tdhc
            sdad = self._sign(dyn, v.get(0x9F37, b""))
            if self.tamper_sdad:
                sdad = sdad[:-1] + bytes((sdad[-1] ^ 1,))
            return e(0x77, e(0x9F27, bytes((cid,))) + e(0x9F36, atc) + e(0x9F4B, sdad) + e(0x9F10, iad))
        return e(0x77, e(0x9F27, bytes((cid,))) + e(0x9F36, atc) + e(0x9F26, ac) + e(0x9F10, iad))


def _pdol_data(card: ContactlessCard) -> bytes:
    out = b""
    for tag, n in tlv.parse_dol(card.pdol):
        out += card.pdol_values.get(tag, bytes(n))
    return out


def _split(dol: bytes, data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    for tag, n in tlv.parse_dol(dol):
        out[tag] = data[i:i + n]
        i += n
    return out


TEST_CA = CaKeyList.load(ROOT / "vectors" / "test-ca.json")
