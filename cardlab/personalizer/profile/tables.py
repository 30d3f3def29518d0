"""The tables an issuer profile is checked against: the EMV data elements it may
name (EMV 4.4 Book 3 Annex A) with where each value comes from, and the code
tables of its fields (CVM methods and conditions, Book 3 Annex C3; cryptogram
versions; ODA methods; GP diversifications and life cycles).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

@dataclass(frozen=True)
class TagInfo:
    """One EMV data element as the profile knows it (EMV 4.4 Book 3 Annex A).

    ``source`` says where its value comes from: ``terminal`` (may appear in a
    DOL), ``card`` (ICC dynamic data a DOL may also name), ``record`` (the
    cardholder record), ``profile`` (this file), ``keys`` (certificates and
    signatures made at data preparation) or ``internal`` (not placed in records).
    """

    name: str
    source: str
    length: int | None = None  # fixed length in bytes, None when variable


def _t(name: str, source: str, length: int | None = None) -> TagInfo:
    return TagInfo(name, source, length)


TAGS: Final[Mapping[int, TagInfo]] = {
    # terminal data (Book 3 Annex A), may be requested in PDOL/CDOL/DDOL/TDOL/log format
    0x9F01: _t("Acquirer Identifier", "terminal", 6),
    0x9F40: _t("Additional Terminal Capabilities", "terminal", 5),
    0x81: _t("Amount, Authorised (Binary)", "terminal", 4),
    0x9F02: _t("Amount, Authorised (Numeric)", "terminal", 6),
    0x9F04: _t("Amount, Other (Binary)", "terminal", 4),
    0x9F03: _t("Amount, Other (Numeric)", "terminal", 6),
    0x9F3A: _t("Amount, Reference Currency", "terminal", 4),
    0x9F09: _t("Application Version Number (terminal)", "terminal", 2),
    0x8A: _t("Authorisation Response Code", "terminal", 2),
    0x9F34: _t("CVM Results", "terminal", 3),
    0x9F22: _t("CA Public Key Index (terminal)", "terminal", 1),
    0x9F1E: _t("Interface Device Serial Number", "terminal", 8),
    0x91: _t("Issuer Authentication Data", "terminal"),
    0x9F15: _t("Merchant Category Code", "terminal", 2),
    0x9F16: _t("Merchant Identifier", "terminal", 15),
    0x9F4E: _t("Merchant Name and Location", "terminal"),
    0x9F39: _t("POS Entry Mode", "terminal", 1),
    0x9F33: _t("Terminal Capabilities", "terminal", 3),
    0x9F1A: _t("Terminal Country Code", "terminal", 2),
    0x9F1B: _t("Terminal Floor Limit", "terminal", 4),
    0x9F1C: _t("Terminal Identification", "terminal", 8),
    0x9F35: _t("Terminal Type", "terminal", 1),
    0x95: _t("Terminal Verification Results", "terminal", 5),
    0x9B: _t("Transaction Status Information", "terminal", 2),
    0x98: _t("Transaction Certificate Hash Value", "terminal", 20),
    0x5F2A: _t("Transaction Currency Code", "terminal", 2),
    0x5F36: _t("Transaction Currency Exponent", "terminal", 1),
    0x9A: _t("Transaction Date", "terminal", 3),
    0x9F21: _t("Transaction Time", "terminal", 3),
    0x9C: _t("Transaction Type", "terminal", 1),
    0x9F41: _t("Transaction Sequence Counter", "terminal"),
    0x9F3C: _t("Transaction Reference Currency Code", "terminal", 2),
    0x9F3D: _t("Transaction Reference Currency Exponent", "terminal", 1),
    0x9F37: _t("Unpredictable Number", "terminal", 4),
    0x9F66: _t("Terminal Transaction Qualifiers", "terminal", 4),
    # card dynamic data a DOL may name (M/Chip CDOL1 carries 9F45 and 9F4C)
    0x9F45: _t("Data Authentication Code", "card", 2),
    0x9F4C: _t("ICC Dynamic Number", "card"),
    0x9F36: _t("Application Transaction Counter", "card", 2),
    0x9F26: _t("Application Cryptogram", "card", 8),
    0x9F27: _t("Cryptogram Information Data", "card", 1),
    0x9F10: _t("Issuer Application Data", "card"),
    0x9F13: _t("Last Online ATC Register", "card", 2),
    0x9F17: _t("PIN Try Counter", "card", 1),
    # from the cardholder record
    0x57: _t("Track 2 Equivalent Data", "record"),
    0x5A: _t("Application PAN", "record"),
    0x5F20: _t("Cardholder Name", "record"),
    0x9F0B: _t("Cardholder Name Extended", "record"),
    0x5F24: _t("Application Expiration Date", "record", 3),
    0x5F25: _t("Application Effective Date", "record", 3),
    0x5F34: _t("Application PAN Sequence Number", "record", 1),
    0x5F30: _t("Service Code", "record", 2),
    0x9F1F: _t("Track 1 Discretionary Data", "record"),
    0x9F20: _t("Track 2 Discretionary Data", "record"),
    # from the profile
    0x4F: _t("Application Identifier (AID)", "profile"),
    0x50: _t("Application Label", "profile"),
    0x87: _t("Application Priority Indicator", "profile", 1),
    0x9F38: _t("PDOL", "profile"),
    0x5F2D: _t("Language Preference", "profile"),
    0x9F11: _t("Issuer Code Table Index", "profile", 1),
    0x9F12: _t("Application Preferred Name", "profile"),
    0x82: _t("Application Interchange Profile", "profile", 2),
    0x94: _t("Application File Locator", "profile"),
    0x8C: _t("CDOL1", "profile"),
    0x8D: _t("CDOL2", "profile"),
    0x8E: _t("CVM List", "profile"),
    0x9F07: _t("Application Usage Control", "profile", 2),
    0x9F08: _t("Application Version Number", "profile", 2),
    0x9F0D: _t("Issuer Action Code - Default", "profile", 5),
    0x9F0E: _t("Issuer Action Code - Denial", "profile", 5),
    0x9F0F: _t("Issuer Action Code - Online", "profile", 5),
    0x5F28: _t("Issuer Country Code", "profile", 2),
    0x9F42: _t("Application Currency Code", "profile", 2),
    0x9F44: _t("Application Currency Exponent", "profile", 1),
    0x9F49: _t("DDOL", "profile"),
    0x97: _t("TDOL", "profile"),
    0x9F14: _t("Lower Consecutive Offline Limit", "profile", 1),
    0x9F23: _t("Upper Consecutive Offline Limit", "profile", 1),
    0x9F4A: _t("Static Data Authentication Tag List", "profile"),
    0x9F4D: _t("Log Entry", "profile", 2),
    0x9F4F: _t("Log Format", "profile"),
    0x5F50: _t("Issuer URL", "profile"),
    0x42: _t("Issuer Identification Number", "profile", 3),
    # made at data preparation from the key store (90, 92, 9F32 may come from the profile's
    # keys.issuer_certificate: the certificate the scheme returned)
    0x8F: _t("Certification Authority Public Key Index", "keys", 1),
    0x90: _t("Issuer Public Key Certificate", "keys"),
    0x92: _t("Issuer Public Key Remainder", "keys"),
    0x9F32: _t("Issuer Public Key Exponent", "keys"),
    0x93: _t("Signed Static Application Data", "keys"),
    0x9F46: _t("ICC Public Key Certificate", "keys"),
    0x9F47: _t("ICC Public Key Exponent", "keys"),
    0x9F48: _t("ICC Public Key Remainder", "keys"),
}

#: data objects a READ RECORD may return (placed by the AFL layout)
RECORD_SOURCES = ("record", "profile", "keys")
#: profile tags that are not record data (FCI, GPO response, GET DATA)
NOT_IN_RECORDS = {0x4F, 0x50, 0x87, 0x9F38, 0x5F2D, 0x9F11, 0x9F12, 0x82, 0x94, 0x9F4D, 0x9F4F}
#: data objects that must be in the records (Book 3 §7.2: mandatory data objects)
MANDATORY_RECORD_TAGS = (0x5A, 0x5F24, 0x8C, 0x8D)
#: what any cryptogram version needs from CDOL1 (VIS CVN 10/18 and M/Chip CVN 16 all cover them)
CDOL1_REQUIRED = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)

CVNS: Final[Mapping[int, str]] = {10: "Visa CVN 10", 18: "Visa CVN 18", 16: "Mastercard CVN 16"}
#: value of DGI 0D01 tag DF01 for each CVN (docs/dgi-map.md)
CVN_CODES: Final[Mapping[int, int]] = {10: 0x0A, 18: 0x12, 16: 0x10}
ODA_METHODS = ("SDA", "DDA", "CDA")
DIVERSIFICATIONS = ("emv", "visa2", "kdf3", "none")
LIFE_CYCLES = ("OP_READY", "INITIALIZED", "SECURED")

#: CVM codes, EMV Book 3 Annex C3 Table 39 (b6–b1 of the first byte)
CVM_METHODS: Final[Mapping[str, int]] = {
    "fail": 0x00,
    "offline_plaintext_pin": 0x01,
    "online_pin": 0x02,
    "offline_plaintext_pin_and_signature": 0x03,
    "offline_enciphered_pin": 0x04,
    "offline_enciphered_pin_and_signature": 0x05,
    "signature": 0x1E,
    "no_cvm": 0x1F,
}
#: CVM condition codes, EMV Book 3 Annex C3 Table 40
CVM_CONDITIONS: Final[Mapping[str, int]] = {
    "always": 0x00,
    "unattended_cash": 0x01,
    "not_cash_or_cashback": 0x02,
    "terminal_supports": 0x03,
    "manual_cash": 0x04,
    "purchase_with_cashback": 0x05,
    "under_x": 0x06,
    "over_x": 0x07,
    "under_y": 0x08,
    "over_y": 0x09,
}
OFFLINE_PIN_METHODS = {0x01, 0x03, 0x04, 0x05}
ENCIPHERED_PIN_METHODS = {0x04, 0x05}


def tag_bytes(tag: int) -> bytes:
    """The tag's bytes as BER-TLV writes them (1 or 2 bytes here).

    >>> tag_bytes(0x9F02).hex().upper(), tag_bytes(0x95).hex().upper()
    ('9F02', '95')
    """
    return tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")


def fmt_tag(tag: int) -> str:
    """The tag as error messages write it (``9F02``)."""
    return tag_bytes(tag).hex().upper()
