"""The issuer host simulator: what the tester's terminal goes online to.

Given an authorization request (PAN, PSN, ATC, unpredictable number, the AC,
its CID, the issuer application data, the AIP and the CDOL1 values by tag) the
host

1. reads the cryptogram version from the IAD (Visa: IAD byte 3, Mastercard:
   IAD byte 2),
2. derives the ICC master keys from the issuer master keys (EMV 4.4 Book 2
   Annex A1.4: Option A, Option B for PANs longer than 16 digits),
3. verifies the ARQC with :mod:`pyemv` — the tester's independent oracle — over
   exactly the data the cryptogram version covers,
4. decides (a :class:`Policy` or any callable), answers an authorization
   response code (ARC, ``8A``), an ARPC (Book 2 §8.2: method 1 ARPC ‖ ARC,
   method 2 ARPC ‖ CSU) and optional issuer scripts (Book 2 §9, Book 3 §10.10):
   template ``71`` (before the final GENERATE AC) and ``72`` (after), each
   command MACed with the SMI session key and PIN data enciphered under the SMC
   session key, all through pyemv.

Mastercard cryptogram versions derive the script session keys from the AC:
the n-th script command of a transaction (0-based, across ``71`` and ``72`` in
the order the terminal sends them) uses ARQC + n (pyemv ``MasterCardCVN16``).

The issuer master keys and the ICC master keys are never part of a repr,
a reason, an event or a response.
"""

from __future__ import annotations

import functools
import hmac
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pyemv import cvn as pyemv_cvn
from pyemv import kd as pyemv_kd

from . import cryptogram, tlv

# pyemv reaches 3DES through cryptography's deprecated location; the warning is
# about pyemv's import path, not about anything a tester user can act on
warnings.filterwarnings("ignore", message=".*TripleDES.*", module="pyemv")

# -- cryptogram versions --------------------------------------------------------------------

ARQC, TC, AAC = 0x80, 0x40, 0x00

#: ARCs (Book 4 Annex A6 / ISO 8583 field 39 as two ASCII characters)
ARC_APPROVED = b"00"
ARC_DECLINED = b"05"
ARC_REFERRAL = b"01"
ARC_OFFLINE_APPROVED = b"Y3"  # unable to go online, offline approved
ARC_OFFLINE_DECLINED = b"Z3"  # unable to go online, offline declined

#: method 2 card status update (Book 2 §8.2.2; byte 2 b8 = "approved")
CSU_APPROVED = bytes.fromhex("00800000")
CSU_DECLINED = bytes.fromhex("00000000")


@dataclass(frozen=True)
class CryptogramVersion:
    """What the host knows about one cryptogram version."""

    scheme: Literal["Visa", "Mastercard"]
    cvn: int
    name: str
    factory: Any  # the pyemv class
    arpc_method: int  # 1: ARPC(8) ‖ ARC ; 2: ARPC(4) ‖ CSU
    ac_suffix: Callable[[bytes], bytes]  # IAD → the last argument of pyemv generate_ac
    ac_plus_n: bool  # script keys from ARQC + n (AC-based session keys)


#: Visa (VIS 1.5/1.6): IAD = 06 ‖ DKI ‖ CVN ‖ CVR(4, with its length byte 03) [‖ IDD]
VISA: dict[int, CryptogramVersion] = {
    0x0A: CryptogramVersion("Visa", 0x0A, "Visa CVN 10", pyemv_cvn.VisaCVN10, 1, lambda iad: iad[3:7], False),
    0x12: CryptogramVersion("Visa", 0x12, "Visa CVN 18", pyemv_cvn.VisaCVN18, 2, lambda iad: iad, False),
}
#: Mastercard (M/Chip 4): IAD = KDI ‖ CVN ‖ CVR(6) ‖ DAC/IDN(2) ‖ counters…
MASTERCARD: dict[int, CryptogramVersion] = {
    0x10: CryptogramVersion(
        "Mastercard", 0x10, "Mastercard CVN 16", pyemv_cvn.MasterCardCVN16, 1, lambda iad: iad[2:8], True
    ),
}

VISA_RID = bytes.fromhex("A000000003")
MASTERCARD_RID = bytes.fromhex("A000000004")


def cryptogram_version(iad: bytes, aid: bytes = b"") -> tuple[CryptogramVersion | None, str]:
    """The cryptogram version named by the issuer application data (and why).

    The RID of the AID settles the scheme when it is Visa's or Mastercard's;
    otherwise the IAD's layout does: a Visa IAD starts with its length 06 and
    names the CVN in byte 3, a Mastercard IAD names it in byte 2.
    """
    if not iad:
        return None, "no issuer application data (9F10): the cryptogram version is unknown"
    visa_cvn = iad[2] if len(iad) >= 7 and iad[0] == 0x06 else None
    mc_cvn = iad[1] if len(iad) >= 8 else None
    rid = aid[:5]
    if rid == VISA_RID or (rid != MASTERCARD_RID and visa_cvn in VISA):
        if visa_cvn in VISA:
            v = VISA[visa_cvn]
            return v, f"IAD byte 3 = {visa_cvn:02X}: {v.name}"
        byte3 = f"{iad[2]:02X}" if len(iad) > 2 else "absent"
        return None, f"Visa IAD byte 3 = {byte3}: cryptogram version not supported by the host"
    if mc_cvn in MASTERCARD:
        v = MASTERCARD[mc_cvn]
        return v, f"IAD byte 2 = {mc_cvn:02X}: {v.name}"
    return None, f"IAD {iad.hex().upper()} names no cryptogram version the host supports"


@functools.lru_cache(maxsize=16)
def derive_icc_mk(imk: bytes, pan: str, psn: str, option: str = "auto") -> bytes:
    """ICC master key (Book 2 A1.4): Option A for PANs of up to 16 digits,
    Option B above (``option`` "A" or "B" forces one), through pyemv.

    Remembered for the last few cards: a certification makes a host per transaction (contact,
    then each contactless one), and each would otherwise derive the same three keys again. The
    values stay in this process's memory, as the IMKs themselves do."""
    use_b = option == "B" or (option == "auto" and len(pan) > 16)
    return bytes(pyemv_kd.derive_icc_mk_b(imk, pan, psn) if use_b else pyemv_kd.derive_icc_mk_a(imk, pan, psn))


# -- the request ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorizationRequest:
    """What the terminal sends online (the ICC data of an ISO 8583 field 55)."""

    pan: str
    psn: str
    atc: bytes  # 9F36
    unpredictable_number: bytes  # 9F37
    cryptogram: bytes  # 9F26
    cid: bytes  # 9F27
    iad: bytes  # 9F10
    aip: bytes  # 82
    dol_values: Mapping[int, bytes] = field(default_factory=dict)  # CDOL1 values by tag
    aid: bytes = b""

    @property
    def amount(self) -> int:
        raw = self.dol_values.get(0x9F02, b"")
        digits = raw.hex()
        return int(digits) if digits.isdigit() else 0

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)

    @classmethod
    def from_state(cls, state: Any) -> AuthorizationRequest:
        """From a :class:`cardlab.tester.state.TransactionState` after the first GENERATE AC."""
        values = dol_values(state.card_data.get(0x8C, b""), state.cdol1_data)
        card = state.card_data
        pan = card.get(0x5A, b"").hex().upper().rstrip("F")
        psn = card[0x5F34].hex()[-2:] if 0x5F34 in card else "00"
        un = values.get(0x9F37) or state.unpredictable_number
        return cls(
            pan=pan,
            psn=psn,
            atc=state.ac1.get(0x9F36, b""),
            unpredictable_number=un,
            cryptogram=state.ac1.get(0x9F26, b""),
            cid=state.ac1.get(0x9F27, b""),
            iad=state.ac1.get(0x9F10, b""),
            aip=state.aip or card.get(0x82, b""),
            dol_values=values,
            aid=state.aid,
        )


def dol_values(dol: bytes, data: bytes) -> dict[int, bytes]:
    """Cut DOL-built data back into tag → value (Book 3 §5.4)."""
    out: dict[int, bytes] = {}
    i = 0
    for tag, n in tlv.parse_dol(dol):
        out[tag] = data[i : i + n]
        i += n
    return out


def mask_pan(pan: str) -> str:
    return pan[:6] + "*" * max(0, len(pan) - 10) + pan[-4:] if len(pan) > 10 else "*" * len(pan)


# -- issuer scripts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """One issuer script command the host should send.

    ``kind``: "application block", "application unblock", "card block",
    "pin unblock", "pin change", "put data", "update record" or "raw".
    ``when``: "before" (template 71) or "after" (template 72) the final
    GENERATE AC. ``bad_mac`` corrupts the MAC (to test the card and the
    terminal's reporting); ``script_id`` is the 9F18 of its template.
    """

    kind: str
    when: Literal["before", "after"] = "after"
    new_pin: str = ""
    current_pin: str = ""  # Visa: PIN change with the current PIN (P2 01)
    tag: int = 0
    value: bytes = b""
    sfi: int = 0
    record: int = 0
    ins: int = 0
    p1: int = 0
    p2: int = 0
    script_id: bytes = b""
    bad_mac: bool = False

    def __repr__(self) -> str:  # no PINs in reprs
        return f"Script({self.kind!r}, when={self.when!r})"


def application_block(when: Literal["before", "after"] = "after", **kw: Any) -> Script:
    return Script("application block", when, **kw)


def application_unblock(when: Literal["before", "after"] = "after", **kw: Any) -> Script:
    return Script("application unblock", when, **kw)


def card_block(when: Literal["before", "after"] = "after", **kw: Any) -> Script:
    return Script("card block", when, **kw)


def pin_unblock(when: Literal["before", "after"] = "after", **kw: Any) -> Script:
    return Script("pin unblock", when, **kw)


def pin_change(new_pin: str, when: Literal["before", "after"] = "after", **kw: Any) -> Script:
    return Script("pin change", when, new_pin=new_pin, **kw)


def put_data(tag: int, value: bytes, when: Literal["before", "after"] = "after", **kw: Any) -> Script:
    return Script("put data", when, tag=tag, value=value, **kw)


def update_record(sfi: int, record: int, data: bytes, when: Literal["before", "after"] = "after",
                  **kw: Any) -> Script:
    return Script("update record", when, sfi=sfi, record=record, value=data, **kw)


_SIMPLE = {"application block": 0x1E, "application unblock": 0x18, "card block": 0x16, "pin unblock": 0x24}


# -- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    approve: bool
    reason: str
    arc: bytes = b""  # default: 00 / 05


@dataclass(frozen=True)
class Policy:
    """The host's default decision: decline a cryptogram that does not verify,
    decline above ``amount_limit`` (minor units), or force an outcome."""

    amount_limit: int | None = None
    force: Literal["approve", "decline"] | None = None
    decline_bad_cryptogram: bool = True

    def __call__(self, request: AuthorizationRequest, arqc_valid: bool | None, why: str) -> Decision:
        if self.force == "approve":
            return Decision(True, "approval forced by the host policy")
        if self.force == "decline":
            return Decision(False, "decline forced by the host policy")
        if self.decline_bad_cryptogram and not arqc_valid:
            return Decision(False, f"cryptogram not verified: {why}")
        if self.amount_limit is not None and request.amount > self.amount_limit:
            return Decision(False, f"amount {request.amount} above the limit {self.amount_limit}")
        return Decision(True, "cryptogram verified" + (
            f", amount {request.amount} within the limit {self.amount_limit}" if self.amount_limit is not None else ""))


class DecideFn(Protocol):
    def __call__(self, request: AuthorizationRequest, arqc_valid: bool | None, why: str) -> Decision: ...


# -- the response ------------------------------------------------------------------------------


@dataclass
class AuthorizationResponse:
    approved: bool
    arc: bytes  # 8A, two ASCII characters
    arqc_valid: bool | None  # None: could not be checked (unknown cryptogram version, data missing)
    reason: str  # the decision and why (PAN masked)
    arqc_reason: str  # what the cryptogram check found
    cryptogram_version: str = ""  # e.g. "Visa CVN 18"
    cvn: int | None = None
    arpc_method: int = 0
    arpc: bytes = b""
    csu: bytes = b""
    issuer_authentication_data: bytes = b""  # the value of 91
    expected_cryptogram: bytes = b""  # what the host computed (evidence; not a key)
    scripts_before: list[bytes] = field(default_factory=list)  # 71 commands, in order
    scripts_after: list[bytes] = field(default_factory=list)  # 72 commands
    script_templates: bytes = b""  # 71 … ‖ 72 … as the network would carry them

    def as_dict(self) -> dict[str, Any]:
        return {
            "approved": self.approved,
            "arc": self.arc,
            "arqc_valid": self.arqc_valid,
            "reason": self.reason,
            "arqc_reason": self.arqc_reason,
            "cryptogram_version": self.cryptogram_version,
            "arpc_method": self.arpc_method,
            "arpc": self.arpc,
            "csu": self.csu,
            "issuer_authentication_data": self.issuer_authentication_data,
            "script_templates": self.script_templates,
        }


class HostError(ValueError):
    pass


class IssuerHost:
    """An issuer's authorization host for cards of its issuer master keys.

    Only IMK-AC is needed to verify ARQCs and answer ARPCs; scripts need
    IMK-SMI (the MAC, Book 2 §9.2) and a PIN change IMK-SMC as well (the
    enciphered PIN, Book 2 §9.3): without them :meth:`authorize` refuses the
    script with a :class:`HostError` (see :meth:`can_send`)."""

    def __init__(
        self,
        imk_ac: bytes,
        imk_smi: bytes | None = None,
        imk_smc: bytes | None = None,
        *,
        decide: DecideFn | None = None,
        derivation: Literal["auto", "A", "B"] = "auto",
        explain: bool = False,
        test_keys: bool = False,
    ) -> None:
        for k in (imk_ac, imk_smi, imk_smc):
            if k is not None and len(k) not in (16, 24):
                raise HostError("issuer master keys are 16- or 24-byte 3DES keys")
        self.__keys = (bytes(imk_ac), None if imk_smi is None else bytes(imk_smi),
                       None if imk_smc is None else bytes(imk_smc))
        self.decide: DecideFn = decide if decide is not None else Policy()
        self.derivation = derivation
        #: open the cryptogram up in the teaching trace (:meth:`explain_cryptogram`); key values
        #: are shown only when the keys are TEST keys (a key store marked ``"test_only": true``)
        self.explain = explain
        self.test_keys = test_keys
        self._crypto: dict[tuple[str, str, int], Any] = {}
        self.requests = 0
        self._queued: list[Script] = []

    def can_send(self, script: Script) -> str:
        """Why the host cannot build ``script`` ("" when it can): a script needs
        IMK-SMI, a PIN change IMK-SMC too."""
        _ac, smi, smc = self.__keys
        if smi is None:
            return "no IMK-SMI: the host cannot MAC issuer scripts"
        if script.kind == "pin change" and smc is None:
            return "no IMK-SMC: the host cannot encipher a new PIN"
        return ""

    def queue_scripts(self, *scripts: Script) -> None:
        """Scripts for the next authorization that names none (what the
        kernel's ``run_transaction(..., online_host=host)`` path uses)."""
        self._queued.extend(scripts)

    def __repr__(self) -> str:
        return f"IssuerHost(keys=<hidden>, decide={self.decide!r}, derivation={self.derivation!r})"

    # -- crypto objects (ICC MKs derived once per card and version) --------------------------
    def _crypto_for(self, version: CryptogramVersion, pan: str, psn: str) -> Any:
        key = (pan, psn, version.cvn)
        obj = self._crypto.get(key)
        if obj is None:
            ac, smi, smc = self.__keys
            # pyemv's __init__ does nothing but derive the three ICC MKs with the option its
            # class defaults to; the host chooses the option, so the object is made without it
            # (test_issuer_host checks that is all __init__ sets). A key the issuer did not
            # share stays None: can_send keeps scripts from reaching it.
            obj = version.factory.__new__(version.factory)
            obj.icc_mk_ac = derive_icc_mk(ac, pan, psn, self.derivation)
            obj.icc_mk_smi = None if smi is None else derive_icc_mk(smi, pan, psn, self.derivation)
            obj.icc_mk_smc = None if smc is None else derive_icc_mk(smc, pan, psn, self.derivation)
            if len(self._crypto) > 256:
                self._crypto.clear()
            self._crypto[key] = obj
        return obj

    # -- the cryptogram ------------------------------------------------------------------------
    def expected_cryptogram(self, request: AuthorizationRequest) -> tuple[bytes | None, CryptogramVersion | None, str]:
        """The AC the card should have computed, with the version and why (or None)."""
        version, why = cryptogram_version(request.iad, request.aid)
        if version is None:
            return None, None, why
        v = request.dol_values
        needed = {0x9F02: "amount, authorised", 0x9F03: "amount, other", 0x9F1A: "terminal country code",
                  0x95: "TVR", 0x5F2A: "transaction currency code", 0x9A: "transaction date",
                  0x9C: "transaction type", 0x9F37: "unpredictable number"}
        missing = [f"{t:X} ({name})" for t, name in needed.items() if t not in v and not (t == 0x9F37 and request.unpredictable_number)]
        if missing:
            return None, version, f"{version.name}: CDOL1 lacks " + ", ".join(missing)
        if len(request.atc) != 2 or not request.aip:
            return None, version, f"{version.name}: ATC or AIP missing from the request"
        if not request.pan.isdigit():
            return None, version, "PAN missing or not numeric"
        crypto = self._crypto_for(version, request.pan, request.psn)
        un = v.get(0x9F37, request.unpredictable_number)
        ac = crypto.generate_ac(
            v[0x9F02], v[0x9F03], v[0x9F1A], v[0x95], v[0x5F2A], v[0x9A], v[0x9C], un,
            request.aip, request.atc, version.ac_suffix(request.iad),
        )
        return bytes(ac), version, why

    def explain_cryptogram(self, request: AuthorizationRequest, card_ac_source: str = "the card") -> list[tuple[str, str]]:
        """The cryptogram opened up, as (kind, text) lines for the trace
        (:mod:`cardlab.tester.cryptogram`): one refusal line unless the keys are TEST keys."""
        if not self.test_keys:
            return [("note", "cryptogram not opened up: the key store is not marked test (\"test_only\": true, "
                             "docs/keystore.md); key values are shown for TEST keys only")]
        expected, version, reason = self.expected_cryptogram(request)
        if version is None or expected is None:
            return [("note", f"cryptogram not opened up: {reason}")]
        v = request.dol_values
        terminal = {t: v.get(t, request.unpredictable_number if t == 0x9F37 else b"")
                    for t, _n in cryptogram.TERMINAL_TAGS}
        opened = cryptogram.open_cryptogram(
            scheme=version.scheme, cvn=version.cvn, name=version.name, imk=self.__keys[0], pan=request.pan,
            psn=request.psn, option=self.derivation, terminal=terminal, aip=request.aip, atc=request.atc,
            iad=request.iad, suffix=version.ac_suffix(request.iad), card_ac=request.cryptogram,
            card_ac_source=card_ac_source, pyemv_ac=expected)
        return cryptogram.lines(opened)

    def verify(self, request: AuthorizationRequest) -> tuple[bool | None, str, bytes]:
        """(verdict, reason, expected AC): True verified, False differs, None not checkable."""
        expected, version, why = self.expected_cryptogram(request)
        if expected is None or version is None:
            return None, why, b""
        kind = {ARQC: "ARQC", TC: "TC", AAC: "AAC"}.get(request.cid[0] & 0xC0 if request.cid else -1, "AC")
        if hmac.compare_digest(expected, request.cryptogram):
            return True, f"{kind} verified under the issuer master key ({why})", expected
        return False, (f"{kind} {request.cryptogram.hex().upper()} differs from the expected "
                       f"{expected.hex().upper()} ({why}; PAN {request.masked_pan}, ATC "
                       f"{request.atc.hex().upper()})"), expected

    # -- the answer ----------------------------------------------------------------------------
    def authorize(self, request: AuthorizationRequest, scripts: Sequence[Script] = ()) -> AuthorizationResponse:
        """Verify, decide, answer ARC, ARPC and scripts."""
        self.requests += 1
        if not scripts and self._queued:
            scripts, self._queued = tuple(self._queued), []
        for script in scripts:
            why = self.can_send(script)
            if why:
                raise HostError(f"{script.kind}: {why}")
        valid, arqc_reason, expected = self.verify(request)
        version, _ = cryptogram_version(request.iad, request.aid)
        if request.cid and request.cid[0] & 0xC0 != ARQC:
            decision = Decision(False, f"the card sent CID {request.cid.hex().upper()}, not an ARQC")
        else:
            decision = self.decide(request, valid, arqc_reason)
        arc = decision.arc or (ARC_APPROVED if decision.approve else ARC_DECLINED)
        resp = AuthorizationResponse(
            approved=decision.approve, arc=arc, arqc_valid=valid, reason=decision.reason,
            arqc_reason=arqc_reason, expected_cryptogram=expected,
        )
        if version is None or len(request.cryptogram) != 8 or len(request.atc) != 2 or not request.pan.isdigit():
            return resp  # no ARPC, no scripts without a cryptogram version
        crypto = self._crypto_for(version, request.pan, request.psn)
        resp.cryptogram_version, resp.cvn, resp.arpc_method = version.name, version.cvn, version.arpc_method
        if version.arpc_method == 2:
            resp.csu = CSU_APPROVED if decision.approve else CSU_DECLINED
            resp.arpc = bytes(crypto.generate_arpc(request.cryptogram, request.atc, resp.csu))
            resp.issuer_authentication_data = resp.arpc + resp.csu
        else:
            resp.arpc = bytes(crypto.generate_arpc(request.cryptogram, arc))
            resp.issuer_authentication_data = resp.arpc + arc
        ordered = [s for s in scripts if s.when == "before"] + [s for s in scripts if s.when == "after"]
        for n, script in enumerate(ordered):
            command = self._script_command(crypto, version, request, script, n)
            (resp.scripts_before if script.when == "before" else resp.scripts_after).append(command)
        templates = b""
        for n, script in enumerate(ordered):
            command = (resp.scripts_before + resp.scripts_after)[n]
            body = (tlv.encode(0x9F18, script.script_id) if script.script_id else b"") + tlv.encode(0x86, command)
            templates += tlv.encode(0x71 if script.when == "before" else 0x72, body)
        resp.script_templates = templates
        return resp

    @staticmethod
    def _script_command(crypto: Any, version: CryptogramVersion, request: AuthorizationRequest,
                        script: Script, n: int) -> bytes:
        ac = request.cryptogram
        if version.ac_plus_n:
            ac = ((int.from_bytes(ac, "big") + n) % (1 << 64)).to_bytes(8, "big")
        atc = request.atc
        if script.kind == "pin change":
            if not script.new_pin.isdigit() or not 4 <= len(script.new_pin) <= 12:
                raise HostError("a new PIN is 4 to 12 digits")
            if version.scheme == "Visa":
                command = bytes(crypto.generate_pin_change_command(
                    script.new_pin, ac, atc, script.current_pin or None))
            else:
                command = bytes(crypto.generate_pin_change_command(script.new_pin, ac, atc))
        else:
            if script.kind in _SIMPLE:
                ins, p1, p2, data = _SIMPLE[script.kind], 0, 0, b""
            elif script.kind == "put data":
                ins, p1, p2, data = 0xDA, script.tag >> 8 & 0xFF, script.tag & 0xFF, script.value
            elif script.kind == "update record":
                ins, p1, p2, data = 0xDC, script.record, (script.sfi << 3) | 0x04, script.value
            elif script.kind == "raw":
                ins, p1, p2, data = script.ins, script.p1, script.p2, script.value
            else:
                raise HostError(f"unknown script kind {script.kind!r}")
            if len(data) + 8 > 0xFF:
                raise HostError("script command data too long")
            # Book 3 §6.5: PUT DATA and UPDATE RECORD are inter-industry (CLA 04),
            # the others proprietary (CLA 84), secure messaging either way
            cla = 0x04 if ins in (0xDA, 0xDC) else 0x84
            header = bytes((cla, ins, p1, p2, len(data) + 8))
            mac = bytes(crypto.generate_command_mac(header, ac, atc, data))
            command = header + data + mac
        if script.bad_mac:
            command = command[:-1] + bytes((command[-1] ^ 0x01,))
        return command
