"""Cryptogram versions (CVN): how each one lays out the CVR and the issuer
application data, which data its cryptogram covers, and its session keys.

SKELETON (lead): the dataclass and the interface are fixed; the crypto
engineer implements the profiles (Visa CVN 10 and 18, Mastercard CVN 16) as
one parametrized implementation — a table of differences, not copies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CvrFacts:
    """What card risk management found, independent of any CVR layout.

    Card risk management (ac.py) fills it; a CVN profile encodes it into its
    own CVR bytes (Visa VIS 1.5 Appendix A CVR, M/Chip CVR).
    """

    first_ac: int = 0x00  # CID type bits of the 1st GENERATE AC answer: 00 AAC, 40 TC, 80 ARQC
    second_ac: int | None = None  # of the 2nd GENERATE AC, None before it
    offline_pin_performed: bool = False
    offline_pin_failed: bool = False
    pin_try_limit_exceeded: bool = False
    unable_to_go_online: bool = False  # terminal asked for TC/AAC at 2nd GEN AC after ARQC without reply
    last_online_not_completed: bool = False
    lower_consecutive_exceeded: bool = False
    upper_consecutive_exceeded: bool = False
    lower_cumulative_exceeded: bool = False
    upper_cumulative_exceeded: bool = False
    new_card: bool = False  # no online transaction yet (last online ATC = 0)
    issuer_auth_failed_last: bool = False  # on the last online transaction
    issuer_auth_performed: bool = False  # in this transaction
    issuer_auth_failed: bool = False  # in this transaction
    script_count: int = 0  # issuer script commands processed in the last online transaction
    script_failed_last: bool = False
    dda_performed: bool = False  # INTERNAL AUTHENTICATE answered in this transaction
    cda_performed: bool = False
    application_blocked_pin: bool = False  # blocked because the PIN try limit was exceeded
