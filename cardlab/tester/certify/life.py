"""Card and application life cycles, read over the tester's own SCP03
(GP Card Spec 2.3 §5.1, §5.3, §11.4; Amendment D).

The card keys are diversified from the key store's KMC (the profile's
``card.kmc``, scheme ``card.diversification``) by the KDD the card answers in
INITIALIZE UPDATE; a card whose cryptogram does not verify under them fails
LIFE-CARD-002. Then GET STATUS P1=80 gives the card life cycle (LIFE-CARD-001
against the profile's ``card.target_life_cycle``) and P1=40 the instances
(LIFE-APP-003: each profile application PERSONALIZED, not LOCKED, and
selectable).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import gp
from ..channel import CardChannel
from ..scp03 import Scp03Error, Scp03Session, diversify
from ..sources import KeyStore, mask_pan, redact
from .results import FAIL, NA, NOT_RUN, PASS, Result

LIFE_RULES = ["LIFE-CARD-001", "LIFE-CARD-002", "LIFE-APP-003"]
DEFAULT_ISD_AIDS = (bytes.fromhex("A000000151000000"), bytes.fromhex("A0000000030000"), bytes.fromhex("A000000003000000"))


@dataclass(frozen=True)
class GpCardProfile:
    """What the profile says about the card as a GP platform."""

    isd_aid: bytes | None
    kmc: str | None
    scheme: str
    key_version: int
    target: str | None  # card life cycle name, None when the profile has none
    app_aids: tuple[bytes, ...]

    @classmethod
    def from_doc(cls, doc: dict[str, Any], app_aids: tuple[bytes, ...] = ()) -> GpCardProfile:
        card = doc.get("card") or {}
        aid = card.get("isd_aid")
        kv = card.get("key_version", 0)
        return cls(
            isd_aid=bytes.fromhex(str(aid)) if aid else None,
            kmc=str(card["kmc"]) if card.get("kmc") else None,
            scheme=str(card.get("diversification", "KDF3")).upper(),
            key_version=int(kv, 16) if isinstance(kv, str) else int(kv),
            # the personalizer's default for EMV profiles is SECURED (docs/profile.md)
            target=str(card.get("target_life_cycle") or ("SECURED" if doc.get("applications") else "")).upper() or None,
            app_aids=app_aids,
        )

    @classmethod
    def from_file(cls, path: str | Path, app_aids: tuple[bytes, ...] = ()) -> GpCardProfile:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return cls.from_doc(doc if isinstance(doc, dict) else {}, app_aids)


def _r(rule: str, verdict: str, evidence: str, expected: str = "", found: str = "", pan: str = "") -> Result:
    if pan and pan in evidence:
        evidence = evidence.replace(pan, mask_pan(pan))
    return Result(rule, verdict, redact(evidence), expected, found)


def _unrun(rule: str, why: str) -> Result:
    """A rule that applies but could not run (a critical one makes the card incomplete)."""
    return _r(rule, NOT_RUN, f"{NOT_RUN}: {why}")


def _sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big") if len(resp) >= 2 else 0


def open_session(channel: CardChannel, prof: GpCardProfile, keys: KeyStore, level: int = 0x01) -> tuple[Scp03Session, bytes]:
    """SELECT the ISD and open SCP03 with keys diversified from the KMC.
    Raises :class:`Scp03Error` (no key named), LookupError (no ISD)."""
    kmc = keys.symmetric_key(prof.kmc, "KMC")
    if kmc is None:
        raise LookupError(f"the key store has no KMC{' named ' + prof.kmc if prof.kmc else ''}")
    kmc_value = kmc[1]
    candidates = (prof.isd_aid,) if prof.isd_aid else DEFAULT_ISD_AIDS
    isd = None
    for aid in candidates:
        assert aid is not None
        if _sw(channel.transmit(bytes((0x00, 0xA4, 0x04, 0x00, len(aid))) + aid + b"\x00")) == 0x9000:
            isd = aid
            break
    if isd is None:
        raise LookupError("no issuer security domain answers SELECT (" + ", ".join(a.hex().upper() for a in candidates if a) + ")")
    scheme = prof.scheme

    def card_keys(kdd: bytes) -> Any:
        return diversify(kmc_value, scheme, kdd)

    session = Scp03Session(channel.transmit, card_keys, level=level, key_version=prof.key_version, isd_aid=isd)
    session.open()
    return session, isd


def life_cycle_results(channel: CardChannel, prof: GpCardProfile, keys: KeyStore, *, pan: str = "",
                       keep: dict[str, Any] | None = None) -> list[Result]:
    """LIFE-CARD-002, LIFE-CARD-001 and LIFE-APP-003 for one card (card-level
    results, one each). ``keep["apps"]``: the GET STATUS P1=40 entries and SW, for PRIV-001."""
    out: dict[str, Result] = {}

    def done() -> list[Result]:
        for rid in LIFE_RULES:
            out.setdefault(rid, _r(rid, NA, "not reached: no secure channel"))
        return [out[rid] for rid in LIFE_RULES]

    if keys.symmetric_key(prof.kmc, "KMC") is None:
        why = f"the key store has no KMC ({prof.kmc or 'profile names none'}): GP keys not provided"
        return [_unrun(rid, why) for rid in LIFE_RULES]
    try:
        session, isd = open_session(channel, prof, keys)
    except LookupError as exc:
        out["LIFE-CARD-002"] = _r("LIFE-CARD-002", FAIL, str(exc), "ISD selectable", "not found")
        return done()
    except Scp03Error as exc:
        out["LIFE-CARD-002"] = _r("LIFE-CARD-002", FAIL, f"SCP03 with keys diversified from the KMC ({prof.scheme}): {exc}",
                                  "card cryptogram verifies", f"SW {exc.sw:04X}" if exc.sw else "does not verify")  # fmt: skip
        return done()
    assert session.init is not None
    out["LIFE-CARD-002"] = _r("LIFE-CARD-002", PASS, f"SCP03 (i={session.init.i:02X}, KVN {session.init.kvn:02X}) opened on ISD "
                              f"{isd.hex().upper()} with keys diversified {prof.scheme} from the KMC by the card's KDD",
                              "card cryptogram verifies", "verifies")  # fmt: skip
    try:
        isd_entries, sw = gp.get_status(session.send, gp.ISD)
        app_entries, sw_apps = gp.get_status(session.send, gp.APPS)
    except (Scp03Error, gp.GpError) as exc:
        out["LIFE-CARD-001"] = _r("LIFE-CARD-001", FAIL, f"GET STATUS: {exc}")
        return done()
    if keep is not None:
        keep["apps"] = (app_entries, sw_apps)
    # card life cycle
    if not isd_entries:
        out["LIFE-CARD-001"] = _r("LIFE-CARD-001", FAIL, f"GET STATUS P1=80 answered {sw:04X}", "ISD entry", f"{sw:04X}")
    elif prof.target is None:
        found = gp.card_state_name(isd_entries[0].lifecycle)
        out["LIFE-CARD-001"] = _r("LIFE-CARD-001", NA, f"the profile names no target life cycle; the card is {found}", "", found)
    else:
        code = isd_entries[0].lifecycle
        want = gp.card_state_code(prof.target)
        found = gp.card_state_name(code)
        out["LIFE-CARD-001"] = _r("LIFE-CARD-001", PASS if code == want else FAIL,
                                  f"GET STATUS P1=80: card life cycle {code:02X} ({found})", prof.target, found)  # fmt: skip
    # application life cycles
    if not prof.app_aids:
        out["LIFE-APP-003"] = _r("LIFE-APP-003", NA, "the profile defines no application instance")
    else:
        by_aid = {e.aid: e for e in app_entries}
        bad: list[str] = []
        seen: list[str] = []
        for aid in prof.app_aids:
            e = by_aid.get(aid)
            if e is None:
                bad.append(f"{aid.hex().upper()}: not in the registry (GET STATUS P1=40 {sw_apps:04X})")
                continue
            name = gp.app_state_name(e.lifecycle)
            seen.append(f"{aid.hex().upper()} {e.lifecycle:02X} {name}")
            if not gp.is_personalized(e.lifecycle):
                bad.append(f"{aid.hex().upper()}: {e.lifecycle:02X} {name}")
        # selectable: SELECT each (this ends the secure channel, so it comes last)
        for aid in prof.app_aids:
            if aid not in by_aid:
                continue
            sw_sel = _sw(channel.transmit(bytes((0x00, 0xA4, 0x04, 0x00, len(aid))) + aid + b"\x00"))
            if sw_sel not in (0x9000,):
                bad.append(f"{aid.hex().upper()}: SELECT answered {sw_sel:04X}")
        others = [e for e in app_entries if e.aid not in prof.app_aids]
        note = f"; other instances: {', '.join(e.aid_hex + ' ' + gp.app_state_name(e.lifecycle) for e in others)}" if others else ""
        out["LIFE-APP-003"] = _r("LIFE-APP-003", FAIL if bad else PASS,
                                 ("; ".join(bad) if bad else "GET STATUS P1=40: " + "; ".join(seen)) + note,
                                 "PERSONALIZED (0F), selectable", "; ".join(bad) or "as expected", pan)  # fmt: skip
    return done()


def gp_profile(profile: Any) -> GpCardProfile:
    """The GP view of the tester's :class:`~tester.sources.IssuerProfile` (read once per run)."""
    aids = tuple(a.aid for a in getattr(profile, "applications", ()))
    target = str(profile.target_life_cycle or "").upper() or None
    return GpCardProfile(profile.isd_aid, profile.kmc, str(getattr(profile, "diversification", "KDF3")).upper(),
                         int(getattr(profile, "key_version", 0)), target, aids)  # fmt: skip


def card_gp_results(channel: CardChannel, profile: Any, keys: KeyStore, *, pan: str = "", enabled: bool = True) -> list[Result]:
    """For :func:`.card.certify_card` (:data:`.evaluators.CARD_EVALUATORS`): the life-cycle rules
    and PRIV-001 from one SCP03 session and one GET STATUS of the applications (``profile``: the
    tester's :class:`~tester.sources.IssuerProfile`)."""
    if not enabled:
        return ([_unrun(rid, "GP life cycles not read: --no-gp-status given (GET STATUS over SCP03 with the key store's KMC)")
                 for rid in LIFE_RULES]
                + [_unrun(rid, "GP privileges not read: --no-gp-status given (GET STATUS over SCP03 with the key store's KMC)")
                   for rid in PRIV_RULES])  # fmt: skip
    prof = gp_profile(profile)
    keep: dict[str, Any] = {}
    life = life_cycle_results(channel, prof, keys, pan=pan, keep=keep)
    if "apps" in keep:
        entries, sw = keep["apps"]
        priv = privileges_from(entries, sw, prof, pan)
    elif keys.symmetric_key(prof.kmc, "KMC") is None:
        priv = [_unrun("PRIV-001", f"the key store has no KMC ({prof.kmc or 'profile names none'}): GP keys not provided")]
    else:
        priv = [_r("PRIV-001", NA, "not reached: no secure channel (LIFE-CARD-002)")]
    return life + priv


# -- privileges (PRIV-001) -------------------------------------------------------------------

PRIV_RULES = ["PRIV-001"]
#: the payment system directories (EMV Book 1 §12.2.2; EMV Contactless Book B §3.3)
DIRECTORY_AIDS = (b"1PAY.SYS.DDF01", b"2PAY.SYS.DDF01")
#: the privileges the profile gives: cardlab EMV profiles have no privileges field;
#: every payment application and the PSE / PPSE are installed without privileges
#: (00, EMV CPS script ``vectors/scripts/emv-cps.yaml``, docs/rules.md)
PROFILE_PRIVILEGES = b"\x00"


def _privileges3(value: bytes) -> bytes:
    """GP 2.3 §11.1.2: privileges are 3 bytes; the 1-byte form is the first byte."""
    return (value + bytes(3))[:3]


def privilege_results(channel: CardChannel, prof: GpCardProfile, keys: KeyStore, *, pan: str = "") -> list[Result]:
    """PRIV-001: the privileges (C5) of each profile application instance and
    of the PSE / PPSE instances on the card, from GET STATUS P1=40 over the
    tester's SCP03, equal the profile's (GP Card Spec 2.3 §11.4, table 11-38)."""
    rid = "PRIV-001"
    if keys.symmetric_key(prof.kmc, "KMC") is None:
        return [_unrun(rid, f"the key store has no KMC ({prof.kmc or 'profile names none'}): GP keys not provided")]
    try:
        session, _isd = open_session(channel, prof, keys)
        entries, sw = gp.get_status(session.send, gp.APPS)
    except LookupError as exc:
        return [_r(rid, NA, f"not reached: {exc}")]
    except Scp03Error as exc:
        return [_r(rid, NA, f"not reached: no secure channel ({exc})")]
    except gp.GpError as exc:
        return [_r(rid, FAIL, f"GET STATUS P1=40: {exc}")]
    return privileges_from(entries, sw, prof, pan)


def privileges_from(entries: list[Any], sw: int, prof: GpCardProfile, pan: str = "") -> list[Result]:
    """PRIV-001 from the GET STATUS P1=40 entries (GP Card Spec 2.3 §11.4, table 11-38)."""
    rid = "PRIV-001"
    by_aid = {e.aid: e for e in entries}
    want = _privileges3(PROFILE_PRIVILEGES).hex().upper()
    checked = [*prof.app_aids, *(a for a in DIRECTORY_AIDS if a in by_aid and a not in prof.app_aids)]
    bad: list[str] = []
    seen: list[str] = []
    for aid in checked:
        e = by_aid.get(aid)
        if e is None:
            bad.append(f"{aid.hex().upper()}: not in the registry (GET STATUS P1=40 {sw:04X})")
            continue
        found = _privileges3(e.privileges).hex().upper() if e.privileges else "none"
        seen.append(f"{aid.hex().upper()} C5={found}")
        if found != want:
            bad.append(f"{aid.hex().upper()}: privileges {found}")
    if not checked:
        return [_r(rid, NA, "the profile defines no application instance")]
    return [_r(rid, FAIL if bad else PASS, "GET STATUS P1=40: " + ("; ".join(bad) if bad else "; ".join(seen)),
               f"C5={want} for {len(checked)} instance(s)", "; ".join(bad) or "as expected", pan)]  # fmt: skip
