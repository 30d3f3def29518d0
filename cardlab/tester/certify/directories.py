"""The payment system directories as the profile's applications need them
(EMV 4.4 Book 1 §12.2.2–12.3.2 for the PSE, EMV Contactless Book B §3.3 for
the PPSE): DIR-002 and DIR-003, card-level results.

The issuer profile has no field for the directories: cardlab's convention
(the EMV CPS script ``vectors/scripts/emv-cps.yaml``, ``cardlab.strategies``)
is that every EMV profile's card carries the PPSE ``2PAY.SYS.DDF01`` listing
exactly the profile's applications, and may carry the contact PSE
``1PAY.SYS.DDF01``. So:

* DIR-002: SELECT 2PAY.SYS.DDF01 answers 9000 and an FCI
  6F {84 = 2PAY.SYS.DDF01, A5 {BF0C {61 {4F, 50, 87}…}}} whose entries are
  exactly the profile's applications (AID 4F, label 50, priority 87), each
  once, nothing else.
* DIR-003: when SELECT 1PAY.SYS.DDF01 answers 9000, the directory records
  (SFI from 88, READ RECORD 1, 2… until 6A83) hold exactly the profile's
  applications likewise; not applicable without a PSE. (DIR-001 checks, per
  application, what the kernel's candidate list took from the PSE.)
"""

from __future__ import annotations

from typing import Any

from ..channel import CardChannel
from ..exchange import answer
from ..sources import mask_pan, redact
from ..tlv import Tlv, TlvError, parse
from .results import FAIL, NA, PASS, Result

PSE = b"1PAY.SYS.DDF01"
PPSE = b"2PAY.SYS.DDF01"
DIR_RULES = ["DIR-002", "DIR-003"]
MAX_RECORDS = 32

Entry = tuple[str, str, str]  # (AID hex, label, priority hex)


def _r(rule: str, verdict: str, evidence: str, expected: str = "", found: str = "", pan: str = "") -> Result:
    if pan:
        evidence, expected, found = (t.replace(pan, mask_pan(pan)) for t in (evidence, expected, found))
    return Result(rule, verdict, redact(evidence), redact(expected), redact(found))  # never cut


def _exchange(channel: CardChannel, apdu: bytes) -> tuple[bytes, int]:
    """One command, following 61xx with GET RESPONSE."""
    data, sw = answer(apdu, channel.transmit(apdu))
    for _ in range(32):
        if sw >> 8 != 0x61:
            break
        get_response = bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF))
        more, sw = answer(get_response, channel.transmit(get_response))
        data += more
    return data, sw


def _select(channel: CardChannel, name: bytes) -> tuple[bytes, int]:
    return _exchange(channel, bytes((0x00, 0xA4, 0x04, 0x00, len(name))) + name + b"\x00")


def expected_entries(profile: Any) -> list[Entry]:
    """(AID, label, priority) of each profile application, as the tester reads the profile."""
    return sorted((a.aid.hex().upper(), str(a.label), f"{int(a.priority):02X}") for a in profile.applications)


def _entry(t: Tlv) -> tuple[Entry | None, str]:
    """A 61 application template → its (4F, 50, 87), or a problem."""
    try:
        fields: dict[int, bytes] = {}
        for c in t.children():
            fields.setdefault(c.tag, c.value)
    except TlvError as exc:
        return None, f"61 template not BER-TLV: {exc}"
    if 0x4F not in fields:
        return None, "61 template without an AID (4F)"
    label = fields.get(0x50)
    prio = fields.get(0x87)
    return (fields[0x4F].hex().upper(), label.decode("ascii", "replace") if label is not None else "-",
            prio.hex().upper() if prio is not None else "-"), ""  # fmt: skip


def _compare(rule: str, where: str, found: list[Entry], problems: list[str], want: list[Entry], pan: str) -> Result:
    def show(entries: list[Entry]) -> str:
        return "; ".join(f"{a} {lab!r} prio {p}" for a, lab, p in entries) or "none"

    missing = [e for e in want if e not in found]
    extra = [e for e in found if e not in want]
    twice = sorted({e for e in found if found.count(e) > 1})
    bad = list(problems)
    if missing:
        bad.append("missing or different: " + show(missing))
    if extra:
        bad.append("not the profile's: " + show(extra))
    if twice:
        bad.append("listed twice: " + show(twice))
    ev = f"{where}: " + ("; ".join(bad) if bad else f"lists exactly the profile's {len(want)} application(s)")
    return _r(rule, FAIL if bad else PASS, ev, show(want), show(sorted(found)), pan)


def ppse_result(channel: CardChannel, profile: Any, *, pan: str = "") -> Result:
    """DIR-002 (EMV Contactless Book B §3.3; Book 1 §12.3)."""
    want = expected_entries(profile)
    data, sw = _select(channel, PPSE)
    if sw != 0x9000:
        return _r("DIR-002", FAIL, f"SELECT 2PAY.SYS.DDF01 answered {sw:04X}: no PPSE where the profile's applications need it",
                  "9000, FCI listing the profile's applications", f"{sw:04X}")  # fmt: skip
    try:
        top = parse(data)
        if len(top) != 1 or top[0].tag != 0x6F:
            raise TlvError("not one FCI template 6F")
        inner = {t.tag: t for t in top[0].children()}
        if inner.get(0x84) is None or inner[0x84].value != PPSE:
            found = inner[0x84].value.hex().upper() if 0x84 in inner else "none"
            return _r("DIR-002", FAIL, "PPSE FCI DF name (84) is not 2PAY.SYS.DDF01", PPSE.hex().upper(), found)
        if 0xA5 not in inner:
            raise TlvError("FCI without the proprietary template A5")
        bf0c = [t for t in inner[0xA5].children() if t.tag == 0xBF0C]
        if len(bf0c) != 1:
            raise TlvError(f"A5 holds {len(bf0c)} FCI issuer discretionary data BF0C")
        entries: list[Entry] = []
        problems: list[str] = []
        for t in bf0c[0].children():
            if t.tag != 0x61:
                continue
            e, why = _entry(t)
            if e is None:
                problems.append(why)
            else:
                entries.append(e)
    except TlvError as exc:
        return _r("DIR-002", FAIL, f"PPSE FCI not 6F {{84, A5 {{BF0C {{61…}}}}}}: {exc}", "6F{84,A5{BF0C{61…}}}", data.hex().upper()[:200])
    return _compare("DIR-002", "PPSE FCI (BF0C)", entries, problems, want, pan)


def pse_result(channel: CardChannel, profile: Any, *, pan: str = "") -> Result:
    """DIR-003 (EMV Book 1 §12.2.2–12.3.2): the PSE directory, when present."""
    want = expected_entries(profile)
    data, sw = _select(channel, PSE)
    if sw != 0x9000:
        return _r("DIR-003", NA, f"no PSE on the card (SELECT 1PAY.SYS.DDF01 answered {sw:04X})")
    try:
        top = parse(data)
        if len(top) != 1 or top[0].tag != 0x6F:
            raise TlvError("not one FCI template 6F")
        inner = {t.tag: t for t in top[0].children()}
        if 0xA5 not in inner:
            raise TlvError("FCI without the proprietary template A5")
        sfi_tlv = [t for t in inner[0xA5].children() if t.tag == 0x88]
        if not sfi_tlv or len(sfi_tlv[0].value) != 1 or not 1 <= sfi_tlv[0].value[0] <= 10:
            raise TlvError("A5 without a directory SFI (88) of 1–10")
        sfi = sfi_tlv[0].value[0]
    except TlvError as exc:
        return _r("DIR-003", FAIL, f"PSE FCI not 6F {{84, A5 {{88…}}}}: {exc}", "6F{84,A5{88}}", data.hex().upper()[:200])
    entries: list[Entry] = []
    problems: list[str] = []
    for n in range(1, MAX_RECORDS + 1):
        rec, rsw = _exchange(channel, bytes((0x00, 0xB2, n, (sfi << 3) | 4, 0x00)))
        if rsw == 0x6A83:
            break
        if rsw != 0x9000:
            problems.append(f"READ RECORD {n} of SFI {sfi} answered {rsw:04X}")
            break
        try:
            items = parse(rec)
            if len(items) != 1 or items[0].tag != 0x70:
                raise TlvError("not one record template 70")
            for t in items[0].children():
                if t.tag != 0x61:
                    problems.append(f"record {n}: {t.tag:X} is not an application template 61")
                    continue
                e, why = _entry(t)
                if e is None:
                    problems.append(f"record {n}: {why}")
                else:
                    entries.append(e)
        except TlvError as exc:
            problems.append(f"record {n}: {exc}")
    return _compare("DIR-003", f"PSE directory (SFI {sfi})", entries, problems, want, pan)


def directory_results(channel: CardChannel, profile: Any, *, pan: str = "") -> list[Result]:
    """DIR-002 and DIR-003 for one card, in that order."""
    return [ppse_result(channel, profile, pan=pan), pse_result(channel, profile, pan=pan)]
