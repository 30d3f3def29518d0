"""Power-on: the card's ATR against ISO/IEC 7816-3, EMV's basic ATRs and the profile
(ATR-STRUCT-001, ATR-EMV-001, ATR-HIST-001, ATR-PROFILE-001), card-level results.

The ATR is the one the transport got at power-on (``channel.atr()``): through PC/SC
it is what the reader read from the card. The evidence names the byte; the
protocol the transport used is stated when the channel tells it.
"""

from __future__ import annotations

from ..atr import ReadAtr, emv_findings, historical_findings, read
from ..channel import CardChannel
from ..rules import ATR_RULE_IDS, FAIL, NA, PASS, Result
from ..sources import IssuerProfile



def _offered(a: ReadAtr) -> str:
    return ", ".join(f"T={t}" for t in a.protocols)


def atr_results(channel: CardChannel, profile: IssuerProfile) -> list[Result]:
    """One result per ATR rule for the card behind ``channel``."""
    raw = channel.atr()
    protocol = str(getattr(channel, "protocol", "") or "")
    used = f"; transport protocol {protocol}" if protocol else ""
    if not raw:
        return [Result(r, NA, "the transport gave no ATR") for r in ATR_RULE_IDS]
    a = read(raw)
    shown = raw.hex().upper()
    out = [Result("ATR-STRUCT-001", FAIL if a.problems else PASS,
                  "; ".join(a.problems) if a.problems else f"ATR {shown}: structure and TCK as ISO/IEC 7816-3 §8.2{used}",
                  "TS, T0, interface bytes, K historical bytes, TCK unless only T=0", shown)]
    if a.problems:
        out += [Result(r, NA, "the ATR's structure is broken (ATR-STRUCT-001)") for r in ATR_RULE_IDS[1:3]]
    else:
        emv = emv_findings(a)
        out.append(Result("ATR-EMV-001", FAIL if emv else PASS,
                          "; ".join(emv) if emv else f"EMV basic ATR offering {_offered(a)}{used}",
                          "T=0: 3B 6x 00 00 …; T=1: 3B Ex 00 00 81 31 IFSC BWI/CWI … TCK", shown))
        hist = historical_findings(a.historical)
        out.append(Result("ATR-HIST-001", FAIL if hist else PASS,
                          "; ".join(hist) if hist else f"historical bytes {a.historical.hex().upper() or '(none)'} well formed",
                          "category 00 + status indicator, 80 compact-TLV, 10 DIR reference, or proprietary",
                          a.historical.hex().upper()))
    out.append(_profile_result(a, profile, shown))
    return out


def _profile_result(a: ReadAtr, profile: IssuerProfile, shown: str) -> Result:
    rule = "ATR-PROFILE-001"
    if profile.atr is not None:
        want = profile.atr.hex().upper()
        return Result(rule, PASS if want == shown else FAIL, "the ATR equals the profile's card.atr", want, shown)
    if profile.protocol is None and profile.historical_bytes is None:
        return Result(rule, NA, "the profile names no ATR (card.atr / card.protocol)")
    problems: list[str] = []
    if profile.protocol is not None and a.protocols[:1] != [profile.protocol]:
        problems.append(f"first protocol offered T={a.protocols[0] if a.protocols else '?'}, profile T={profile.protocol}")
    if profile.historical_bytes is not None and a.historical != profile.historical_bytes:
        problems.append(f"historical bytes {a.historical.hex().upper()}, profile {profile.historical_bytes.hex().upper()}")
    expected = " ".join(x for x in (f"T={profile.protocol}" if profile.protocol is not None else "",
                                     profile.historical_bytes.hex().upper() if profile.historical_bytes is not None else "") if x)
    return Result(rule, FAIL if problems else PASS,
                  "; ".join(problems) or "protocol and historical bytes as card.protocol / card.historical_bytes",
                  expected, shown)
