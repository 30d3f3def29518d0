"""A small test-only kit for the EMV application tests: a DGI set builder
(docs/dgi-map.md), personalization through a real SCP03 session (INSTALL,
INSTALL [for personalization], STORE DATA with DEK-encrypted secret DGIs) and
terminal helpers. The end-to-end kit lives in tests/emv/; this one stays small.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from cardlab.cardspec import tlv
from cardlab.cardspec.keys import kcv
from cardlab.cardspec.scp03 import HostSession, StaticKeys, dek_encrypt, pad80
from cardlab.emulator import Card
from cardlab.emulator.applets.emv.applet import EmvApplet
from cardlab.emulator.gp.manager import DEFAULT_KEY, new_card_state

KEYS = StaticKeys(DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY, 0x30)
AID_CREDIT = bytes.fromhex("A0000000031010")
AID_DEBIT = bytes.fromhex("A0000000032010")
MK = bytes(range(0x10, 0x40))  # MK-AC ‖ MK-SMI ‖ MK-SMC, test values
PIN = "1234"


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def lv(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def pin_block(pin: str) -> bytes:
    """Plaintext offline PIN block, format 2 (EMV Book 3 §6.5.12)."""
    digits = f"2{len(pin):X}{pin}".ljust(16, "F")
    return bytes.fromhex(digits)


@functools.lru_cache(maxsize=4)
def rsa_key(which: int = 0) -> rsa.RSAPrivateKey:
    """1024-bit test keys, generated once per test run."""
    del which
    return rsa.generate_private_key(65537, 1024)


def crt_dgis(key: rsa.RSAPrivateKey, base: int) -> list[tuple[int, bytes]]:
    """DGIs base+1..base+5: q⁻¹ mod p, d mod (q−1), d mod (p−1), q, p (CPS §5.5)."""
    n = key.private_numbers()
    size = 64

    def b(x: int) -> bytes:
        return x.to_bytes(size, "big")

    return [
        (base + 1, b(n.iqmp)),
        (base + 2, b(n.dmq1)),
        (base + 3, b(n.dmp1)),
        (base + 4, b(n.q)),
        (base + 5, b(n.p)),
    ]


@dataclass
class Profile:
    """The issuer choices the DGI set is built from."""

    aid: bytes = AID_CREDIT
    label: bytes = b"CARDLAB CREDIT"
    priority: int = 1
    pdol: bytes = h("9F3704 9F1A02")
    aip: bytes = h("3900")  # DDA, cardholder verification, terminal risk management, CDA
    afl: bytes = h("08010201 10010100")
    pin: str = PIN
    pin_try: tuple[int, int] = (3, 3)
    response_format: int = 2
    max_atc: int = 0xFFFF
    pin_key: bool = False  # personalize a distinct PIN encipherment key (8101–8105)
    data_objects: dict[int, bytes] = field(default_factory=lambda: {0x5F28: h("0250"), 0x9F42: h("0978")})

    def fci(self) -> bytes:
        items = [(0x50, self.label), (0x87, bytes([self.priority]))]
        if self.pdol:
            items.append((0x9F38, self.pdol))
        items += [(0x5F2D, b"en"), (0x9F12, self.label + b" PREF")]
        return tlv.encode_all(items)

    def records(self) -> list[tuple[int, bytes]]:
        r1 = tlv.encode_all(
            [
                (0x5A, h("4761739001010010")),
                (0x5F24, h("301231")),
                (0x5F34, h("01")),
                (0x9F07, h("FF00")),
                (0x8C, h("9F02069F03069F1A0295055F2A029A039C019F3704")),
                (0x8D, h("8A029F02069F03069F1A0295055F2A029A039C019F3704")),
                # CVM list: amounts X, Y; enciphered PIN by ICC, plaintext PIN by ICC, signature
                (0x8E, h("00000000 00000000 4403 4103 1E03")),
                (0x9F0D, h("F040008800")),
                (0x9F0E, h("0010000000")),
                (0x9F0F, h("F040009800")),
            ]
        )
        r2 = tlv.encode_all([(0x9F47, h("010001")), (0x9F49, h("9F3704"))])
        r3 = tlv.encode_all([(0x5F20, b"CARDHOLDER/TEST"), (0x9F08, h("0096"))])
        return [
            (0x0101, tlv.encode(0x70, r1)),
            (0x0102, tlv.encode(0x70, r2)),
            (0x0201, tlv.encode(0x70, r3)),
        ]

    def risk(self) -> bytes:
        return tlv.encode_all(
            [
                (0xDF01, b"\x12"),
                (0x9F14, b"\x02"),
                (0x9F23, b"\x05"),
                (0xDF15, self.max_atc.to_bytes(2, "big")),
                (0xDF16, bytes([self.response_format])),
                (0x9F4F, h("9F02069A03")),
            ]
        )

    def public_dgis(self) -> list[tuple[int, bytes]]:
        limit, counter = self.pin_try
        return [
            *self.records(),
            (0x9102, self.fci()),
            (0x9104, tlv.encode(0x82, self.aip) + tlv.encode(0x94, self.afl)),
            (0x9000, b"".join(kcv("DES", MK[i : i + 16]) for i in (0, 16, 32))),
            (0x9010, bytes([limit, counter])),
            (0x0D01, self.risk()),
            (0x0E01, tlv.encode_all(sorted(self.data_objects.items()))),
        ]

    def secret_dgis(self) -> list[tuple[int, bytes]]:
        out = [(0x8000, MK), (0x8010, pin_block(self.pin)), *crt_dgis(rsa_key(0), 0x8200)]
        if self.pin_key:
            out += crt_dgis(rsa_key(1), 0x8100)
        return out

    def dgis(self) -> list[tuple[int, bytes]]:
        return self.public_dgis() + self.secret_dgis()


def status(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big")


class Personalizer:
    """INSTALL and STORE DATA through an SCP03 session (level 33) on the basic channel."""

    def __init__(self, card: Card) -> None:
        self.card = card
        isd = card.state.isd_aid
        assert status(card.transmit(bytes((0x00, 0xA4, 0x04, 0x00)) + lv(isd) + b"\x00")) == 0x9000
        self.session = HostSession(card.transmit, KEYS)
        self.session.open(0x33)
        self.block = 0

    def send(self, raw: bytes) -> int:
        return status(self.session.send(raw))

    def install(
        self,
        aid: bytes,
        module: bytes = EmvApplet.MODULE_AID,
        lf: bytes = EmvApplet.LOAD_FILE_AID,
        params: bytes = b"",
    ) -> int:
        data = lv(lf) + lv(module) + lv(aid) + lv(b"\x00") + lv(tlv.encode(0xC9, params)) + b"\x00"
        return self.send(h("80E60C00") + lv(data) + b"\x00")

    def start(self, aid: bytes) -> int:
        self.block = 0
        data = lv(b"") + lv(b"") + lv(aid) + lv(b"") + lv(b"") + b"\x00"
        return self.send(h("80E62000") + lv(data) + b"\x00")

    def store(self, dgis: list[tuple[int, bytes]], *, last: bool = False, encrypt: bool = False) -> int:
        data = b"".join(tlv.encode_dgi(d, v) for d, v in dgis)
        p1 = 0x08 | (0x80 if last else 0)
        if encrypt:
            p1 |= 0x60
            data = dek_encrypt(KEYS.dek, pad80(data))
        sw = self.send(bytes((0x80, 0xE2, p1, self.block)) + lv(data))
        if sw == 0x9000:
            self.block += 1
        return sw

    def store_all(self, dgis: list[tuple[int, bytes]]) -> int:
        """One DGI per STORE DATA, secret ones encrypted; the last one is the last block."""
        for i, (dgi, value) in enumerate(dgis):
            secret = 0x8000 <= dgi <= 0x8FFF
            sw = self.store([(dgi, value)], last=i == len(dgis) - 1, encrypt=secret)
            if sw != 0x9000:
                return sw
        return 0x9000


def new_card(on_commit: Callable[[Card], None] | None = None) -> Card:
    return Card(new_card_state(), on_commit=on_commit)


def personalized_card(*profiles: Profile, on_commit: Callable[[Card], None] | None = None) -> Card:
    """A card with one personalized EMV instance per profile (default: one credit)."""
    card = new_card(on_commit)
    perso = Personalizer(card)
    for profile in profiles or (Profile(),):
        assert perso.install(profile.aid) == 0x9000
        assert perso.start(profile.aid) == 0x9000
        assert perso.store_all(profile.dgis()) == 0x9000
    return card


class Terminal:
    """Plain APDUs to the card; answers (data, SW)."""

    def __init__(self, card: Card) -> None:
        self.card = card

    def send(self, raw: bytes | str) -> tuple[bytes, int]:
        resp = self.card.transmit(h(raw) if isinstance(raw, str) else raw)
        return resp[:-2], status(resp)

    def select(self, name: bytes, p2: int = 0x00) -> tuple[bytes, int]:
        return self.send(bytes((0x00, 0xA4, 0x04, p2)) + lv(name) + b"\x00")

    def gpo(self, pdol_data: bytes = h("01020304 0250")) -> tuple[bytes, int]:
        return self.send(h("80A80000") + lv(tlv.encode(0x83, pdol_data)) + b"\x00")

    def read_record(self, sfi: int, record: int) -> tuple[bytes, int]:
        return self.send(bytes((0x00, 0xB2, record, sfi << 3 | 4, 0x00)))

    def get_data(self, tag: int) -> tuple[bytes, int]:
        return self.send(bytes((0x80, 0xCA, tag >> 8, tag & 0xFF, 0x00)))

    def verify_plain(self, pin: str) -> int:
        return self.send(h("00200080") + lv(pin_block(pin)))[1]
