"""The contactless reader's configuration: the ``contactless:`` section of a terminal
profile (the tester's own design, after EMV Contactless Book A §5 and Book B §3.1).

Entry Point works on *combinations* (Book B §3.1): an AID the reader accepts and the
kernel that processes it, each with its limits and TTQ::

    contactless:
      online_capable: true          # the reader can send an authorization request
      contact_chip: true            # another interface to switch to (Try Another Interface)
      ttq: "36000080"               # 9F66 as configured (Book A Table 5-4); byte 2 is set per transaction
      transaction_limit: 100000     # Reader Contactless Transaction Limit (minor units)
      floor_limit: 0                # Reader Contactless Floor Limit
      cvm_limit: 5000               # Reader CVM Required Limit
      status_check: false           # Book B §3.1.1: a status check asks for an online cryptogram
      combinations:
        - {aid: A0000000031010, kernel: 3}
        - {aid: A0000000041010, kernel: 2, cvm_capability_cvm: "60", cvm_capability_no_cvm: "08"}

Every limit and the TTQ may be given per combination (overriding the section's);
an absent limit is not checked (the floor limit then falls back to the terminal's
floor limit 9F1B, Book B §3.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the kernels this tester implements (Book B §3.2, Table 3-6 kernel identifiers)
KERNELS = {2: "Kernel 2 (Book C-2, EMV mode)", 3: "Kernel 3 (Book C-3, qVSDC)"}


class ReaderConfigError(ValueError):
    """A ``contactless:`` section that cannot be used, with the field that is wrong."""


@dataclass(frozen=True)
class Combination:
    """One AID–kernel combination with its Entry Point configuration (Book B §3.1)."""

    aid: bytes
    kernel: int
    partial: bool = True
    ttq: bytes = b""  # 9F66 as configured; b"" when the kernel does not use one
    transaction_limit: int | None = None
    floor_limit: int | None = None
    cvm_limit: int | None = None
    status_check: bool = False
    zero_amount_allowed: bool = True
    #: kernel 2: 9F33 byte 2 above / below the CVM limit (Book C-2 "CVM Capability – CVM Required"
    #: and "CVM Capability – No CVM Required")
    cvm_capability_cvm: int = 0x60
    cvm_capability_no_cvm: int = 0x08

    def matches(self, adf: bytes) -> bool:
        """Book B §3.3.2.5 step 2B with Book 1 §12.3.1: exact, or partial (the card's AID begins with ours)."""
        return adf == self.aid or (self.partial and len(adf) > len(self.aid) and adf.startswith(self.aid))


@dataclass(frozen=True)
class ContactlessReader:
    combinations: tuple[Combination, ...]
    online_capable: bool = True
    contact_chip: bool = True


def _hexv(raw: Any, where: str, length: int | None = None) -> bytes:
    # unquoted YAML digits arrive as an int: the digits are still the hex the user wrote
    text = str(raw).zfill(2 * (length or 0)) if isinstance(raw, int) else str(raw)
    try:
        value = bytes.fromhex(text.replace(" ", ""))
    except ValueError:
        raise ReaderConfigError(f"{where}: {raw!r} is not hex") from None
    if length is not None and len(value) != length:
        raise ReaderConfigError(f"{where}: expected {length} byte(s), got {len(value)}")
    return value


def _limit(doc: dict[str, Any], key: str, default: int | None, where: str) -> int | None:
    if key not in doc:
        return default
    raw = doc[key]
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= 999_999_999_999:
        raise ReaderConfigError(f"{where}.{key}: expected an amount in minor units, got {raw!r}")
    return raw


_SECTION_KEYS = {"online_capable", "contact_chip", "ttq", "transaction_limit", "floor_limit", "cvm_limit",
                 "status_check", "combinations"}
_COMBINATION_KEYS = {"aid", "kernel", "partial", "ttq", "transaction_limit", "floor_limit", "cvm_limit",
                     "status_check", "zero_amount_allowed", "cvm_capability_cvm", "cvm_capability_no_cvm"}


def parse_reader(doc: Any, where: str = "contactless") -> ContactlessReader:
    """The ``contactless:`` section of a terminal profile; :class:`ReaderConfigError` names the wrong field."""
    if not isinstance(doc, dict):
        raise ReaderConfigError(f"{where}: expected a mapping")
    unknown = sorted(set(doc) - _SECTION_KEYS)
    if unknown:
        raise ReaderConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    ttq = _hexv(doc["ttq"], f"{where}.ttq", 4) if "ttq" in doc else b""
    limits = {k: _limit(doc, k, None, where) for k in ("transaction_limit", "floor_limit", "cvm_limit")}
    combos: list[Combination] = []
    for i, c in enumerate(doc.get("combinations") or []):
        w = f"{where}.combinations[{i}]"
        if not isinstance(c, dict) or "aid" not in c or "kernel" not in c:
            raise ReaderConfigError(f"{w}: expected a mapping with aid and kernel")
        unknown = sorted(set(c) - _COMBINATION_KEYS)
        if unknown:
            raise ReaderConfigError(f"{w}: unknown field(s) {', '.join(unknown)}")
        aid = _hexv(c["aid"], f"{w}.aid")
        if not 5 <= len(aid) <= 16:
            raise ReaderConfigError(f"{w}.aid: an AID is 5 to 16 bytes")
        kernel = c["kernel"]
        if kernel not in KERNELS:
            raise ReaderConfigError(f"{w}.kernel: {kernel!r} is not a kernel this tester implements "
                                    f"({', '.join(str(k) for k in KERNELS)})")
        # kernel 2 reads no TTQ (Book C-2): only a per-combination one is kept
        combo_ttq = _hexv(c["ttq"], f"{w}.ttq", 4) if "ttq" in c else ttq if kernel != 2 else b""
        if kernel == 3 and not combo_ttq:
            raise ReaderConfigError(f"{w}: kernel 3 needs a TTQ (9F66), Book C-3 §5.2")
        combos.append(Combination(
            aid=aid, kernel=kernel, partial=bool(c.get("partial", True)), ttq=combo_ttq,
            transaction_limit=_limit(c, "transaction_limit", limits["transaction_limit"], w),
            floor_limit=_limit(c, "floor_limit", limits["floor_limit"], w),
            cvm_limit=_limit(c, "cvm_limit", limits["cvm_limit"], w),
            status_check=bool(c.get("status_check", doc.get("status_check", False))),
            zero_amount_allowed=bool(c.get("zero_amount_allowed", True)),
            cvm_capability_cvm=_hexv(c.get("cvm_capability_cvm", "60"), f"{w}.cvm_capability_cvm", 1)[0],
            cvm_capability_no_cvm=_hexv(c.get("cvm_capability_no_cvm", "08"), f"{w}.cvm_capability_no_cvm", 1)[0],
        ))
    if not combos:
        raise ReaderConfigError(f"{where}: no combinations (AID and kernel)")
    return ContactlessReader(tuple(combos), bool(doc.get("online_capable", True)), bool(doc.get("contact_chip", True)))
