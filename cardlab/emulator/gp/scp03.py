"""The card side of SCP03 (GP Card Spec 2.3 Amendment D).

:class:`CardSession` is created by INITIALIZE UPDATE (§7.1.1), authenticated
by EXTERNAL AUTHENTICATE (§7.1.2), and then unwraps every secured command
(C-MAC §6.2.4, C-DECRYPTION §6.2.6) and wraps its response (R-MAC §6.2.5,
R-ENCRYPTION §6.2.7). :mod:`cardlab.emulator.card` owns the session per logical
channel and closes it whenever a method here raises :class:`StatusError`.

All failures answer 6982 without saying why beyond the log, and no log or
exception text carries key material.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from cardlab.cardspec import scp03
from cardlab.cardspec.scp03 import (
    I_PSEUDO_RANDOM,
    I_RENC,
    I_RMAC,
    I_S16,
    LEVEL_CDEC,
    LEVEL_CMAC,
    LEVEL_RENC,
    LEVEL_RMAC,
    SECURITY_LEVELS,
    SessionKeys,
)

from ..apdu import SW, Command, StatusError

if TYPE_CHECKING:
    from ..state import CardState, KeyEntry


class SessionCard(Protocol):
    """What a session needs of the card (:class:`cardlab.emulator.card.Card` is one)."""

    state: CardState
    random: Callable[[int], bytes]

    def mark_dirty(self) -> None: ...

log = logging.getLogger(__name__)

KID_ENC, KID_MAC, KID_DEK = 1, 2, 3

#: ``i`` parameter values this card implements (Amendment D §5.1 table 5-1):
#: b1 S8/S16 mode, b5 pseudo-random card challenge, b6 R-MAC, b7 R-ENC (only
#: with R-MAC); b2..b4 and b8 are RFU.
SUPPORTED_I = frozenset(
    base | s16
    for base in (0x00, I_PSEUDO_RANDOM, I_RMAC, I_RMAC | I_PSEUDO_RANDOM, I_RMAC | I_RENC,
                 I_RMAC | I_RENC | I_PSEUDO_RANDOM)
    for s16 in (0x00, I_S16)
)


def find_key_set(keys: list[KeyEntry], kvn: int) -> tuple[int, bytes, bytes, bytes | None] | None:
    """The AES key set (kvn, ENC, MAC, DEK or None) for key version ``kvn``;
    0 = the first key set on the card (GP Card Spec §11.11.2.1 / Amendment D
    §7.1.1.2)."""
    versions: list[int] = []
    for entry in keys:
        if entry.kvn not in versions:
            versions.append(entry.kvn)
    for version in versions if kvn == 0 else [kvn]:
        found = {e.kid: e for e in keys if e.kvn == version and e.kind == "AES"}
        enc, mac, dek = found.get(KID_ENC), found.get(KID_MAC), found.get(KID_DEK)
        if enc is not None and mac is not None:
            return version, enc.value, mac.value, dek.value if dek is not None else None
    return None


class CardSession:
    """One SCP03 secure channel session on one logical channel."""

    def __init__(
        self,
        *,
        keys: SessionKeys,
        i: int,
        host_challenge: bytes,
        card_challenge: bytes,
        kvn: int = 0,
        dek: bytes | None = None,
    ) -> None:
        self.keys = keys
        #: key version that opened the session and its static DEK, kept for the
        #: whole session even if PUT KEY replaces that key set (GP §11.8.2.1)
        self.kvn = kvn
        self.dek = dek
        self.i = i
        self.mac_length = 16 if i & I_S16 else 8
        self.host_challenge = host_challenge
        self.card_challenge = card_challenge
        self.authenticated = False
        self.level = 0
        self.chaining_value = bytes(16)
        #: encryption counter (§6.2.6): 0 after EXTERNAL AUTHENTICATE, incremented
        #: before each secured command, with or without a data field
        self.counter = 0
        self._wrap_next = True

    @property
    def requires_cmac(self) -> bool:
        return bool(self.level & LEVEL_CMAC)

    # -- INITIALIZE UPDATE ---------------------------------------------------------------
    @classmethod
    def initialize_update(cls, card: SessionCard, cmd: Command) -> tuple[CardSession, bytes]:
        """INITIALIZE UPDATE (Amendment D §7.1.1): P1 key version (00 = first
        key set), P2 00, data = host challenge (8 bytes; 16 in S16 mode).

        Response (§7.1.1.6 table 7-3): key diversification data (10) ‖ key
        information (KVN, '03', i) ‖ card challenge ‖ card cryptogram ‖
        sequence counter (3, only with pseudo-random challenges).
        """
        state = card.state
        i = state.scp_i
        n = 16 if i & I_S16 else 8
        if cmd.p2 != 0x00:
            raise StatusError(SW.INCORRECT_P1P2)
        if len(cmd.data) != n:
            raise StatusError(SW.WRONG_LENGTH, "host challenge length")
        key_set = find_key_set(state.keys, cmd.p1)
        if key_set is None:
            raise StatusError(SW.REFERENCED_DATA_NOT_FOUND, f"no SCP03 key set {cmd.p1:02X}")
        kvn, enc, mac, dek = key_set
        host_challenge = cmd.data
        counter = b""
        if i & I_PSEUDO_RANDOM:
            seq = state.sequence_counter
            if seq > 0xFFFFFF:
                raise StatusError(SW.CONDITIONS_NOT_SATISFIED, "sequence counter exhausted")
            card_challenge = scp03.pseudo_random_challenge(enc, seq, state.isd_aid, n)
            counter = seq.to_bytes(3, "big")
            # the next INITIALIZE UPDATE uses the next value; persisted before
            # this response leaves the card
            state.sequence_counter = seq + 1
            card.mark_dirty()
        else:
            card_challenge = card.random(n)
        keys = scp03.derive_session_keys(enc, mac, host_challenge, card_challenge)
        cryptogram = scp03.card_cryptogram(keys.mac, host_challenge, card_challenge, n)
        session = cls(
            keys=keys, i=i, host_challenge=host_challenge, card_challenge=card_challenge, kvn=kvn, dek=dek
        )
        data = state.kdd + bytes((kvn, 0x03, i)) + card_challenge + cryptogram + counter
        return session, data

    # -- EXTERNAL AUTHENTICATE -----------------------------------------------------------
    def external_authenticate(self, cmd: Command) -> None:
        """EXTERNAL AUTHENTICATE (§7.1.2): P1 security level, data = host
        cryptogram ‖ C-MAC. Wrong level → 6A86; anything else wrong → 6982."""
        n = self.mac_length
        level = cmd.p1
        if level not in SECURITY_LEVELS or cmd.p2 != 0x00:
            raise StatusError(SW.INCORRECT_P1P2, "security level not supported")
        if level & LEVEL_RMAC and not self.i & I_RMAC or level & LEVEL_RENC and not self.i & I_RENC:
            raise StatusError(SW.INCORRECT_P1P2, "security level beyond the i parameter")
        if not cmd.secure_messaging or len(cmd.data) != 2 * n:
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "EXTERNAL AUTHENTICATE must carry cryptogram and C-MAC")
        expected = scp03.host_cryptogram(self.keys.mac, self.host_challenge, self.card_challenge, n)
        mac = self._compute_cmac(bytes(16), cmd, cmd.data[:n])
        # evaluate both before deciding, so that timing says nothing about which failed
        ok_cryptogram = hmac.compare_digest(expected, cmd.data[:n])
        ok_mac = hmac.compare_digest(mac[:n], cmd.data[n:])
        if not (ok_cryptogram and ok_mac):
            log.info("EXTERNAL AUTHENTICATE failed (host cryptogram or C-MAC)")
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "authentication failed")
        self.chaining_value = mac
        self.counter = 0
        self.level = level
        self.authenticated = True
        # the EXTERNAL AUTHENTICATE response itself carries no R-MAC
        self._wrap_next = False

    def _compute_cmac(self, chaining_value: bytes, cmd: Command, body: bytes) -> bytes:
        header = bytes((scp03.mac_cla(cmd.cla), cmd.ins, cmd.p1, cmd.p2))
        lc = scp03.encode_lc(len(cmd.data), cmd.extended)
        return scp03.c_mac(self.keys.mac, chaining_value, header, lc, body)

    # -- secured traffic -----------------------------------------------------------------
    def unwrap(self, cmd: Command) -> Command:
        """Verify the C-MAC (with the chaining value) and decrypt the data when
        the level has C-DECRYPTION; the plain command has CLA's SM bit cleared."""
        if not self.authenticated or not self.level & LEVEL_CMAC:
            raise StatusError(SW.SECURE_MESSAGING_NOT_SUPPORTED, "no C-MAC in this session")
        self._wrap_next = True
        n = self.mac_length
        if len(cmd.data) < n:
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "C-MAC missing")
        body, received = cmd.data[:-n], cmd.data[-n:]
        mac = self._compute_cmac(self.chaining_value, cmd, body)
        if not hmac.compare_digest(mac[:n], received):
            log.info("C-MAC verification failed on INS %02X", cmd.ins)
            raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "C-MAC mismatch")
        self.chaining_value = mac
        self.counter += 1
        if self.level & LEVEL_CDEC and body:
            try:
                body = scp03.decrypt_command_data(self.keys.enc, self.counter, body)
            except ValueError:
                raise StatusError(SW.SECURITY_STATUS_NOT_SATISFIED, "command data not decryptable") from None
        return Command(scp03.plain_cla(cmd.cla), cmd.ins, cmd.p1, cmd.p2, body, cmd.ne, cmd.extended)

    def wrap(self, data: bytes, sw: int) -> bytes:
        """Protect a successful response (§6.2.5, §6.2.7): R-ENC of the data
        (if any) then R-MAC over chaining value ‖ data ‖ SW. Returns the new
        response data, without the SW."""
        if not self._wrap_next:
            self._wrap_next = True
            return data
        if self.level & LEVEL_RENC and data:
            data = scp03.encrypt_response_data(self.keys.enc, self.counter, data)
        if self.level & LEVEL_RMAC:
            data += scp03.r_mac(self.keys.rmac, self.chaining_value, data, sw)[: self.mac_length]
        return data
