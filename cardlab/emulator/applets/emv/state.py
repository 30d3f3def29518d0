"""Persistent data of one EMV payment application instance.

Everything here is written by personalization (EMV CPS DGIs, see
``docs/dgi-map.md``) or by transactions (counters, flags, log) and is saved in
the card image through :meth:`EmvData.dump` / :meth:`EmvData.load`.
Transaction-scoped values (challenge, PIN verified in this transaction, the
first GENERATE AC's outcome) live in :class:`Transaction`, which is reset at
every SELECT and never saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cardlab.cardspec.rsa import CrtKey


def _hex(b: bytes) -> str:
    return b.hex().upper()


@dataclass
class RsaCrtKey:
    """An RSA private key in CRT form (CPS DGIs 8201–8205 / 8101–8105)."""

    p: int
    q: int
    dp: int  # d mod (p-1)
    dq: int  # d mod (q-1)
    qinv: int  # q^-1 mod p

    @property
    def modulus(self) -> int:
        return self.p * self.q

    @property
    def size(self) -> int:
        """Modulus length in bytes (N_IC)."""
        return (self.modulus.bit_length() + 7) // 8

    def private(self, m: int) -> int:
        """m^d mod n by the CRT (Garner) on GMP: the card's signing/decryption primitive."""
        crt = self.__dict__.get("_crt")
        if crt is None:
            crt = self.__dict__["_crt"] = CrtKey(self.p, self.q, self.dp, self.dq, self.qinv)
        return crt.private(m)

    def dump(self) -> dict[str, str]:
        return {k: format(getattr(self, k), "X") for k in ("p", "q", "dp", "dq", "qinv")}

    @classmethod
    def load(cls, d: dict[str, str]) -> RsaCrtKey:
        return cls(*(int(d[k], 16) for k in ("p", "q", "dp", "dq", "qinv")))


@dataclass
class RiskParameters:
    """Card-internal issuer choices (cardlab DGI 0D01, BER-TLV; see docs/dgi-map.md).

    Amounts are in minor units of the application currency.
    """

    cvn: int = 0x12  # cryptogram version: 0x0A Visa CVN 10, 0x12 Visa CVN 18, 0x10 Mastercard CVN 16
    dki: int = 0x01  # derivation key index, echoed in the IAD
    lower_consecutive_offline: int = 0  # 9F14 LCOL
    upper_consecutive_offline: int = 0  # 9F23 UCOL
    lower_cumulative_offline: int = 0  # cardlab DF11
    upper_cumulative_offline: int = 0  # cardlab DF12 (Mastercard CTTAUL-like)
    currency: int = 0  # 9F42 application currency code
    currency_exponent: int = 2
    #: Application Default Action (9F52, Visa ADA style), 2 bytes of flags; see ac.py
    default_action: bytes = b"\x00\x00"
    #: issuer authentication required after an online transaction (cardlab DF13)
    issuer_auth_required: bool = False
    arpc_method: int = 1  # 1: EXTERNAL AUTHENTICATE with 91 = ARPC ‖ ARC; 2: ARPC ‖ CSU in 2nd GENERATE AC
    max_atc: int = 0xFFFF  # the ATC never wraps (EMV Book 3 §7.1)
    response_format: int = 2  # 1: tag 80, 2: tag 77 (GPO and GENERATE AC)
    log_sfi: int = 0  # 9F4D first byte (0 = no log)
    log_records: int = 0  # 9F4D second byte
    log_format: bytes = b""  # 9F4F: a DOL naming the logged data


@dataclass(frozen=True)
class ConversionRate:
    """One entry of the currency conversion table (cardlab DGI 0D02, docs/dgi-map.md).

    ``mantissa / 10**exponent`` is the factor that turns minor units of
    ``currency`` into minor units of the application currency (the issuer folds
    the two currency exponents into it). Card risk management design after
    M/Chip 4's Currency Conversion Table and VIS 1.5's secondary currency with
    its conversion factor: EMV Book 3 Annex C leaves it to the issuer.
    """

    currency: int  # ISO 4217 numeric (5F2A as a number)
    mantissa: int  # n 8, > 0
    exponent: int  # decimal places of the mantissa, 0..12


@dataclass
class Transaction:
    """Transaction-scoped state; reset when the application is selected."""

    gpo_done: bool = False
    challenge: bytes | None = None  # GET CHALLENGE, for enciphered PIN (EMV Book 3 §6.5.6)
    pin_verified: bool = False
    pin_failed: bool = False  # offline PIN tried and failed in this transaction
    pin_try_limit_exceeded: bool = False
    ac_count: int = 0  # GENERATE AC commands answered (0, 1 or 2)
    first_cid: int | None = None
    arqc: bytes | None = None  # for issuer authentication and script session keys
    unpredictable_number: bytes = b""  # 9F37 from CDOL1
    issuer_auth_performed: bool = False
    issuer_auth_ok: bool = False
    scripts_run: int = 0
    script_failed: bool = False
    amount: int = 0  # 9F02 of the first GENERATE AC
    cdol1_data: bytes = b""
    pdol_data: bytes = b""  # value of 83 in GET PROCESSING OPTIONS (hashed by CDA, EMV Book 2 §6.6.1)
    dda_performed: bool = False  # INTERNAL AUTHENTICATE answered (EMV Book 2 §6.5)
    aip: bytes = b""  # the AIP the GPO answered on this interface (covered by the AC)


@dataclass
class EmvData:
    # --- personalization (see docs/dgi-map.md) --------------------------------
    fci_proprietary: bytes = b""  # DGI 9102: value of A5 (50, 87, 9F38, 5F2D, 9F11, 9F12, BF0C)
    fci_proprietary_contactless: bytes = b""  # DGI 9103: A5 on the contactless interface
    aip: bytes = b""  # DGI 9104 tag 82
    afl: bytes = b""  # DGI 9104 tag 94
    records: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (SFI, record) → 70 template
    mk_ac: bytes = b""  # DGI 8000 (ICC master keys, 3DES, 16 bytes each)
    mk_smi: bytes = b""
    mk_smc: bytes = b""
    pin_block: bytes = b""  # DGI 8010: offline PIN block (2 ‖ N ‖ PIN ‖ F…, 8 bytes)
    pin_try_limit: int = 3  # DGI 9010
    pin_try_counter: int = 3
    icc_key: RsaCrtKey | None = None  # DGI 8201–8205
    pin_key: RsaCrtKey | None = None  # DGI 8101–8105 (ICC PIN encipherment key; else the ICC key)
    risk: RiskParameters = field(default_factory=RiskParameters)
    # --- contactless interface (DGIs 9207 and 0D03; empty: a contact-only application) ---
    aip_contactless: bytes = b""  # DGI 9207 tag 82
    afl_contactless: bytes = b""  # DGI 9207 tag 94
    kernel: int = 0  # DGI 0D03 9F2A: 3 qVSDC (Book C-3), 2 EMV mode (Book C-2), 0 none
    ctq: bytes = b""  # DGI 0D03 9F6C (kernel 3)
    fdda_version: int = 0  # DGI 0D03 DF22: 1 = fDDA version 01 (kernel 3), 0 none
    third_party_data: bytes = b""  # DGI 0D03 9F6E (kernel 2)
    #: DGI 0D02: currency conversion table for the cumulative offline amount (empty: none)
    currency_conversion: tuple[ConversionRate, ...] = ()
    #: other data objects for GET DATA / PUT DATA (cardlab DGI 0E01, BER-TLV), tag → value
    data_objects: dict[int, bytes] = field(default_factory=dict)
    #: DGIs received so far, for the completeness check at the last block
    received: set[int] = field(default_factory=set)
    personalized: bool = False
    # --- counters and flags (changed before the response that reveals them) ---
    atc: int = 0  # 9F36
    last_online_atc: int = 0  # 9F13
    consecutive_offline: int = 0
    cumulative_offline: int = 0
    issuer_auth_failed: bool = False  # on the last online transaction
    online_not_completed: bool = False  # last transaction went online without a 2nd GENERATE AC
    script_failed: bool = False  # on the last online transaction
    blocked: bool = False  # APPLICATION BLOCK
    log: list[bytes] = field(default_factory=list)  # newest first (cyclic, EMV Book 3 Annex D)
    #: record data objects looked up since personalization (not saved; cleared
    #: by whatever changes a record after personalization)
    tag_cache: dict[int, bytes | None] = field(default_factory=dict, compare=False, repr=False)

    def copy(self) -> EmvData:
        """A copy equal to ``EmvData.load(self.dump())`` without the round trip through hex: new
        containers (records, data objects, DGIs received, log, risk parameters), the immutable
        values shared (bytes, ints, the RSA keys, which nothing changes in place), no cache. A
        STORE DATA works on one, so that a refused command leaves the application as it was."""
        return replace(self, records=dict(self.records), data_objects=dict(self.data_objects),
                       received=set(self.received), log=list(self.log), risk=replace(self.risk), tag_cache={})

    def dump(self) -> dict[str, Any]:
        h = _hex
        r = self.risk
        return {
            "fci_proprietary": h(self.fci_proprietary),
            "fci_proprietary_contactless": h(self.fci_proprietary_contactless),
            "aip": h(self.aip),
            "afl": h(self.afl),
            "records": {f"{sfi:02X}{rec:02X}": h(v) for (sfi, rec), v in sorted(self.records.items())},
            "mk": [h(self.mk_ac), h(self.mk_smi), h(self.mk_smc)],
            "pin_block": h(self.pin_block),
            "pin_try": [self.pin_try_limit, self.pin_try_counter],
            "icc_key": self.icc_key.dump() if self.icc_key else None,
            "pin_key": self.pin_key.dump() if self.pin_key else None,
            "risk": {
                "cvn": r.cvn, "dki": r.dki, "lcol": r.lower_consecutive_offline,
                "ucol": r.upper_consecutive_offline, "lcul": r.lower_cumulative_offline,
                "ucul": r.upper_cumulative_offline, "currency": r.currency,
                "currency_exponent": r.currency_exponent, "ada": h(r.default_action),
                "issuer_auth_required": r.issuer_auth_required, "arpc_method": r.arpc_method,
                "max_atc": r.max_atc, "response_format": r.response_format, "log_sfi": r.log_sfi,
                "log_records": r.log_records, "log_format": h(r.log_format),
            },
            "currency_conversion": [[c.currency, c.mantissa, c.exponent] for c in self.currency_conversion],
            "data_objects": {f"{t:X}": h(v) for t, v in sorted(self.data_objects.items())},
            "received": sorted(self.received),
            "personalized": self.personalized,
            "atc": self.atc,
            "last_online_atc": self.last_online_atc,
            "consecutive_offline": self.consecutive_offline,
            "cumulative_offline": self.cumulative_offline,
            "flags": {
                "issuer_auth_failed": self.issuer_auth_failed,
                "online_not_completed": self.online_not_completed,
                "script_failed": self.script_failed,
                "blocked": self.blocked,
            },
            "log": [h(e) for e in self.log],
            # only a dual-interface application carries it (images of contact-only ones are as before)
            **({"contactless": {
                "aip": h(self.aip_contactless), "afl": h(self.afl_contactless), "kernel": self.kernel,
                "ctq": h(self.ctq), "fdda_version": self.fdda_version, "third_party_data": h(self.third_party_data),
            }} if self.kernel or self.aip_contactless else {}),
        }

    @classmethod
    def load(cls, d: dict[str, Any]) -> EmvData:
        if not d:
            return cls()
        u = bytes.fromhex
        r = d["risk"]
        risk = RiskParameters(
            cvn=r["cvn"], dki=r["dki"], lower_consecutive_offline=r["lcol"],
            upper_consecutive_offline=r["ucol"], lower_cumulative_offline=r["lcul"],
            upper_cumulative_offline=r["ucul"], currency=r["currency"],
            currency_exponent=r["currency_exponent"], default_action=u(r["ada"]),
            issuer_auth_required=r["issuer_auth_required"], arpc_method=r["arpc_method"],
            max_atc=r["max_atc"], response_format=r["response_format"], log_sfi=r["log_sfi"],
            log_records=r["log_records"], log_format=u(r["log_format"]),
        )
        flags = d["flags"]
        cl = d.get("contactless", {})  # absent from images saved before the contactless interface
        return cls(
            fci_proprietary=u(d["fci_proprietary"]),
            fci_proprietary_contactless=u(d["fci_proprietary_contactless"]),
            aip=u(d["aip"]),
            afl=u(d["afl"]),
            records={(int(k[:2], 16), int(k[2:], 16)): u(v) for k, v in d["records"].items()},
            mk_ac=u(d["mk"][0]), mk_smi=u(d["mk"][1]), mk_smc=u(d["mk"][2]),
            pin_block=u(d["pin_block"]),
            pin_try_limit=d["pin_try"][0], pin_try_counter=d["pin_try"][1],
            icc_key=RsaCrtKey.load(d["icc_key"]) if d["icc_key"] else None,
            pin_key=RsaCrtKey.load(d["pin_key"]) if d["pin_key"] else None,
            risk=risk,
            aip_contactless=u(cl.get("aip", "")),
            afl_contactless=u(cl.get("afl", "")),
            kernel=cl.get("kernel", 0),
            ctq=u(cl.get("ctq", "")),
            fdda_version=cl.get("fdda_version", 0),
            third_party_data=u(cl.get("third_party_data", "")),
            # absent from card images saved before DGI 0D02 existed
            currency_conversion=tuple(ConversionRate(*e) for e in d.get("currency_conversion", [])),
            data_objects={int(t, 16): u(v) for t, v in d["data_objects"].items()},
            received=set(d["received"]),
            personalized=d["personalized"],
            atc=d["atc"],
            last_online_atc=d["last_online_atc"],
            consecutive_offline=d["consecutive_offline"],
            cumulative_offline=d["cumulative_offline"],
            issuer_auth_failed=flags["issuer_auth_failed"],
            online_not_completed=flags["online_not_completed"],
            script_failed=flags["script_failed"],
            blocked=flags["blocked"],
            log=[u(e) for e in d["log"]],
        )
