"""Test-only helpers for the GENERATE AC and issuer tests: an issuer profile
(risk parameters, CVN, ICC master keys derived with pyemv from issuer master
keys) on top of emvkit's DGI builder, and a host that checks cryptograms and
builds ARPCs and script commands with pyemv (the oracle)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyemv
from emvkit import Personalizer, Profile, Terminal, h, lv, new_card

from cardlab.cardspec import tlv
from cardlab.cardspec.keys import kcv
from cardlab.emulator import Card
from cardlab.emulator.applets.emv.applet import EmvApplet

IMK_AC = h("0123456789ABCDEFFEDCBA9876543210")
IMK_SMI = h("FEDCBA98765432100123456789ABCDEF")
IMK_SMC = h("89ABCDEF0123456776543210FEDCBA98")
PAN, PSN = "4761739001010010", "01"
CVNS = (0x0A, 0x12, 0x10)
#: online on: new card, issuer auth failed last, PIN try limit exceeded, script failed, last online not completed
ADA_ONLINE = 0x4000 | 0x2000 | 0x0400 | 0x0200 | 0x0100
CDOL1 = h("9F02069F03069F1A0295055F2A029A039C019F3704")


def oracle(cvn: int) -> Any:
    klass = {0x0A: pyemv.cvn.VisaCVN10, 0x12: pyemv.cvn.VisaCVN18, 0x10: pyemv.cvn.MasterCardCVN16}[cvn]
    return klass(IMK_AC, IMK_SMI, IMK_SMC, PAN, PSN)


@dataclass
class IssuerProfile(Profile):
    cvn: int = 0x12
    aip: bytes = h("3D00")  # emvkit's AIP plus issuer authentication (b3)
    lcol: int = 2
    ucol: int = 4
    lower_amount: int = 10000
    upper_amount: int = 20000
    ada: int = 0
    currency: bytes = h("0978")  # 9F42 in DGI 0D01
    auth_required: bool = False
    arpc_method: int | None = None  # default: the CVN's own (1; 2 for CVN 18)
    log: tuple[int, int] | None = None
    log_format: bytes = h("9F02069A039F36029F2701")
    cdol2: bytes = h("8A029F02069F03069F1A0295055F2A029A039C019F3704")
    extra_risk: list[tuple[int, bytes]] = field(default_factory=list)
    #: entries of DGI 0D02's DF18 (currency conversion table); no DGI when empty
    conversion: bytes = b""

    def icc_keys(self) -> bytes:
        o = oracle(self.cvn)
        return bytes(o.icc_mk_ac + o.icc_mk_smi + o.icc_mk_smc)

    def method(self) -> int:
        return self.arpc_method or (2 if self.cvn == 0x12 else 1)

    def records(self) -> list[tuple[int, bytes]]:
        out = []
        for dgi, rec in super().records():
            if dgi == 0x0101:
                items = [(t.tag, t.value) for t in tlv.parse(tlv.parse(rec)[0].value)]
                items = [(t, self.cdol2 if t == 0x8D else v) for t, v in items]
                rec = tlv.encode(0x70, tlv.encode_all(items))
            out.append((dgi, rec))
        return out

    def risk(self) -> bytes:
        items = [
            (0xDF01, bytes([self.cvn])),
            (0x9F14, bytes([self.lcol])),
            (0x9F23, bytes([self.ucol])),
            (0xDF11, h(f"{self.lower_amount:012d}")),
            (0xDF12, h(f"{self.upper_amount:012d}")),
            (0x9F42, self.currency),
            (0x9F52, self.ada.to_bytes(2, "big")),
            (0xDF13, bytes([self.auth_required])),
            (0xDF14, bytes([self.method()])),
            (0xDF15, self.max_atc.to_bytes(2, "big")),
            (0xDF16, bytes([self.response_format])),
            *self.extra_risk,
        ]
        if self.log:
            items += [(0x9F4D, bytes(self.log)), (0x9F4F, self.log_format)]
        return tlv.encode_all(items)

    def public_dgis(self) -> list[tuple[int, bytes]]:
        keys = self.icc_keys()
        kcvs = b"".join(kcv("DES", keys[i : i + 16]) for i in (0, 16, 32))
        out = [(d, kcvs if d == 0x9000 else v) for d, v in super().public_dgis()]
        return out + ([(0x0D02, tlv.encode(0xDF18, self.conversion))] if self.conversion else [])

    def secret_dgis(self) -> list[tuple[int, bytes]]:
        return [(d, self.icc_keys() if d == 0x8000 else v) for d, v in super().secret_dgis()]


def make_card(profile: IssuerProfile, *, secured: bool = True) -> Card:
    card = new_card()
    perso = Personalizer(card)
    assert perso.install(profile.aid) == 0x9000
    assert perso.start(profile.aid) == 0x9000
    assert perso.store_all(profile.dgis()) == 0x9000
    if secured:
        assert perso.send(h("80F0800F")) == 0x9000  # SET STATUS card SECURED (GP §11.10)
    return card


def cdol1(
    amount: int = 1000, un: bytes = h("11223344"), currency: bytes = h("0978"), tvr: bytes = bytes(5)
) -> bytes:
    return h(f"{amount:012d}") + bytes(6) + h("0250") + tvr + currency + h("261121") + b"\x00" + un


def parse_ac(data: bytes) -> dict[int, bytes]:
    """GENERATE AC response, formats 1 and 2 (Book 3 §6.5.5.4) → tag: value."""
    top = tlv.parse(data)[0]
    if top.tag == 0x80:
        v = top.value
        return {0x9F27: v[:1], 0x9F36: v[1:3], 0x9F26: v[3:11], 0x9F10: v[11:]}
    return {t.tag: t.value for t in top.children}


CDOL1_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)


def split(data: bytes, dol: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    for item in _dol(dol):
        tag, n = item
        out[tag] = data[i : i + n]
        i += n
    return out


def _dol(dol: bytes) -> list[tuple[int, int]]:
    out, i = [], 0
    while i < len(dol):
        j = i + 1
        if dol[i] & 0x1F == 0x1F:
            while dol[j] & 0x80:
                j += 1
            j += 1
        out.append((int.from_bytes(dol[i:j], "big"), dol[j]))
        i = j + 1
    return out


class Host:
    """Terminal + issuer host for one card, cryptograms checked with pyemv."""

    def __init__(self, card: Card, profile: IssuerProfile) -> None:
        self.card, self.profile = card, profile
        self.term = Terminal(card)
        self.oracle = oracle(profile.cvn)
        self.scripts = 0
        self.arqc = b""
        self.atc = b""

    @property
    def app(self) -> EmvApplet:
        applet = self.card.applets[self.profile.aid]
        assert isinstance(applet, EmvApplet)
        return applet

    def begin(self, pin: str | None = None) -> None:
        _, sw = self.term.select(self.profile.aid)
        assert sw == 0x9000, hex(sw)
        _, sw = self.term.gpo()
        assert sw == 0x9000, hex(sw)
        self.scripts = 0
        if pin is not None:
            assert self.term.verify_plain(pin) == 0x9000

    def gen_ac(self, p1: int, data: bytes) -> tuple[dict[int, bytes], int]:
        resp, sw = self.term.send(bytes((0x80, 0xAE, p1, 0x00)) + lv(data) + b"\x00")
        return (parse_ac(resp) if sw == 0x9000 else {}), sw

    def first(self, p1: int, data: bytes | None = None) -> dict[int, bytes]:
        data = cdol1() if data is None else data
        r, sw = self.gen_ac(p1, data)
        assert sw == 0x9000, hex(sw)
        self.check_ac(r, split(data, CDOL1))
        if r[0x9F27][0] & 0xC0 == 0x80:
            self.arqc, self.atc = r[0x9F26], r[0x9F36]
        return r

    def second(self, p1: int, data: bytes, first_data: bytes | None = None) -> dict[int, bytes]:
        r, sw = self.gen_ac(p1, data)
        assert sw == 0x9000, hex(sw)
        values = split(first_data if first_data is not None else cdol1(), CDOL1)
        values.update(split(data, self.profile.cdol2))
        self.check_ac(r, values)
        return r

    def expected_ac(self, values: dict[int, bytes], atc: bytes, iad: bytes) -> bytes:
        args = {f"tag_{t:x}": values[t] for t in CDOL1_TAGS}
        args.update(tag_82=self.profile.aip, tag_9f36=atc)
        if self.profile.cvn == 0x12:
            return bytes(self.oracle.generate_ac(**args, tag_9f10=iad))
        cvr = iad[3:7] if self.profile.cvn == 0x0A else iad[2:8]
        return bytes(self.oracle.generate_ac(**args, cvr=cvr))

    def check_ac(self, r: dict[int, bytes], values: dict[int, bytes]) -> None:
        if 0x9F26 in r:
            assert r[0x9F26] == self.expected_ac(values, r[0x9F36], r[0x9F10])

    # -- issuer side ------------------------------------------------------------
    def arpc1(self, arc: bytes = b"00") -> bytes:
        return bytes(self.oracle.generate_arpc(self.arqc, arc)) + arc

    def arpc2(self, csu: bytes = h("00820000")) -> bytes:
        return bytes(self.oracle.generate_arpc(self.arqc, self.atc, csu)) + csu

    def _script_arqc(self) -> bytes:
        if self.profile.cvn == 0x10:  # M/Chip: ARQC + n for the n-th command
            return ((int.from_bytes(self.arqc, "big") + self.scripts) % (1 << 64)).to_bytes(8, "big")
        return self.arqc

    def script(self, header: bytes, data: bytes = b"", *, bad_mac: bool = False) -> int:
        """header = CLA INS P1 P2; Lc counts the 8-byte MAC."""
        full = header + bytes([len(data) + 8])
        mac = bytes(self.oracle.generate_command_mac(full, self._script_arqc(), self.atc, data))
        self.scripts += 1
        if bad_mac:
            mac = bytes([mac[0] ^ 1]) + mac[1:]
        return self.term.send(full + data + mac)[1]

    def pin_change(self, pin: str, current: str | None = None) -> int:
        if self.profile.cvn == 0x10:
            apdu = bytes(self.oracle.generate_pin_change_command(pin, self._script_arqc(), self.atc))
        else:
            apdu = bytes(self.oracle.generate_pin_change_command(pin, self.arqc, self.atc, current))
        self.scripts += 1
        return self.term.send(apdu)[1]
