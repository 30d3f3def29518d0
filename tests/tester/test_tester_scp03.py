"""Known-answer tests of the tester's own SCP03 host side and GP key
diversification (vectors: /work/shared/reference-vectors.md, Sets A and B,
and GlobalPlatformPro's KCVs)."""

from __future__ import annotations

import pytest

from cardlab.tester import scp03
from cardlab.tester.scp03 import Scp03Error, Scp03Session

h = bytes.fromhex

SET_A_KEYS = scp03.CardKeys(h("404142434445464748494A4B4C4D4E4F"), h("401122334445566748494A4B4C4D4E4F"),
                            h("9876543210404142434445464748494A"))  # fmt: skip
SET_A_AID = h("A000000018434D08090A0B0C000000")
SET_A_HC = h("0807060504030201")
SET_A_IU = h("000050C7606A8CF64800300370A3F5F144D19BE66E72BFCBDF4A14515F00002A")

SET_B_KEYS = scp03.CardKeys(h("000102030405060708090A0B0C0D0E0F"), h("101112131415161718191A1B1C1D1E1F"),
                            h("202122232425262728292A2B2C2D2E2F"))  # fmt: skip
SET_B_HC = h("B13E5F938FC108C4")
SET_B_IU = h("000000000000000000003003703EB51047495B249F66C484C1D2EF1948000002")


class Replay:
    """A card that answers from a script and records what the host sent."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.sent: list[bytes] = []

    def __call__(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.answers.pop(0)


def test_set_a_session_keys_and_cryptograms() -> None:
    s = scp03.session_keys(SET_A_KEYS.enc, SET_A_KEYS.mac, SET_A_HC, h("A3F5F144D19BE66E"))
    assert s.enc == h("852D207B7CC8C880231EDFD5C644CFB1")
    assert s.mac == h("7131B9369F3D19850E6919CD3321523E")
    assert s.rmac == h("B570AA1FDE18F9179B5CBD42D8939D05")
    cc = h("A3F5F144D19BE66E")
    assert scp03.card_cryptogram(s.mac, SET_A_HC, cc) == h("72BFCBDF4A14515F")
    assert scp03.host_cryptogram(s.mac, SET_A_HC, cc) == h("AEB8DAD1865B85E2")
    assert scp03.pseudo_random_challenge(SET_A_KEYS.enc, h("00002A"), SET_A_AID) == cc


def test_set_a_open_level_01() -> None:
    card = Replay([SET_A_IU + b"\x90\x00", b"\x90\x00"])
    session = Scp03Session(card, SET_A_KEYS, level=0x01, host_challenge=SET_A_HC, isd_aid=SET_A_AID).open()
    assert card.sent[0] == h("80500000080807060504030201") + b"\x00"
    assert card.sent[1] == h("8482010010AEB8DAD1865B85E249FC4CF184E61DCD")
    assert session.init is not None and session.init.kdd == h("000050C7606A8CF64800") and session.init.kvn == 0x30


def test_set_a_level_03_wraps_with_c_dec() -> None:
    card = Replay([SET_A_IU + b"\x90\x00", b"\x90\x00"])
    session = Scp03Session(card, SET_A_KEYS, level=0x03, host_challenge=SET_A_HC).open()
    wrapped = session.wrap(h("80E60200150A45786572636973655236000006EF04C602068200"))
    assert wrapped == h("84E6020028DF31907FC027482D5DCB7DC028245F7C108CA4D2AFF12275079768E1EFE9429E840C2C642490B205")


def test_set_b_level_11_c_mac_chain_and_r_mac() -> None:
    card = Replay([SET_B_IU + b"\x90\x00", b"\x90\x00"])
    session = Scp03Session(card, SET_B_KEYS, level=0x11, host_challenge=SET_B_HC).open()
    assert card.sent[0] == h("8050000008B13E5F938FC108C400")
    assert card.sent[1] == h("84821100107D5F5826A993EBC89EEA24957FA0B3CE")
    assert session.wrap(h("80E2910006BF3E035C015A00")) == h("84E291000EBF3E035C015A558D036518A2829700")
    plain = session.unwrap(h("BF3E125A1089882119900000000000000000000005971BE68992DBBDFA9000"))
    assert plain == h("BF3E125A10898821199000000000000000000000059000")
    assert session.wrap(h("80F22002")) == h("84F220020863A63F8959827FB2")
    assert session.wrap(h("80CA006600")) == h("84CA006608A0C6A4A74166F7CE00")
    assert session.wrap(h("80F220020A4F0212345C054F9F70C5")) == h("84F22002124F0212345C054F9F70C52249B50272656536")
    assert session.wrap(h("80F28002024F0000")) == h("84F280020A4F00E91443F6DCE6B8ED00")


def test_set_b_key_version_30() -> None:
    card = Replay([SET_B_IU + b"\x90\x00", b"\x90\x00"])
    Scp03Session(card, SET_B_KEYS, level=0x11, key_version=0x30, host_challenge=SET_B_HC).open()
    assert card.sent[0] == h("8050300008B13E5F938FC108C400")


def test_tampered_r_mac_is_refused() -> None:
    card = Replay([SET_B_IU + b"\x90\x00", b"\x90\x00"])
    session = Scp03Session(card, SET_B_KEYS, level=0x11, host_challenge=SET_B_HC).open()
    session.wrap(h("80E2910006BF3E035C015A00"))
    with pytest.raises(Scp03Error, match="R-MAC"):
        session.unwrap(h("BF3E125A1089882119900000000000000000000006971BE68992DBBDFA9000"))


def test_wrong_keys_fail_on_the_card_cryptogram() -> None:
    card = Replay([SET_A_IU + b"\x90\x00"])
    with pytest.raises(Scp03Error, match="card cryptogram"):
        Scp03Session(card, SET_B_KEYS, host_challenge=SET_A_HC).open()
    assert len(card.sent) == 1  # no EXTERNAL AUTHENTICATE after a bad card cryptogram


def test_level_beyond_i_refused_and_bad_level() -> None:
    iu = bytearray(SET_A_IU)
    iu[12] = 0x10  # i without R-MAC
    with pytest.raises(Scp03Error, match="beyond"):
        Scp03Session(Replay([bytes(iu) + b"\x90\x00"]), SET_A_KEYS, level=0x13, host_challenge=SET_A_HC).open()
    with pytest.raises(ValueError):
        Scp03Session(Replay([]), SET_A_KEYS, level=0x02)


def test_c_dec_r_enc_round_trip() -> None:
    """Level 33: the host's C-DEC and R-ENC agree with a card side computed
    here from the Amendment D definitions."""
    from Crypto.Cipher import AES

    card = Replay([SET_A_IU + b"\x90\x00", b"\x90\x00"])
    session = Scp03Session(card, SET_A_KEYS, level=0x33, host_challenge=SET_A_HC).open()
    s = scp03.session_keys(SET_A_KEYS.enc, SET_A_KEYS.mac, SET_A_HC, h("A3F5F144D19BE66E"))
    wrapped = session.wrap(h("80E2000003414243"))
    body = wrapped[5:-8]
    icv = AES.new(s.enc, AES.MODE_ECB).encrypt((1).to_bytes(16, "big"))
    assert scp03.unpad80(AES.new(s.enc, AES.MODE_CBC, iv=icv).decrypt(body)) == h("414243")
    plain = h("0102030405")
    ricv = AES.new(s.enc, AES.MODE_ECB).encrypt(b"\x80" + (1).to_bytes(15, "big"))
    enc = AES.new(s.enc, AES.MODE_CBC, iv=ricv).encrypt(scp03.pad80(plain))
    rmac = scp03.aes_cmac(s.rmac, session.chaining + enc + b"\x90\x00")[:8]
    assert session.unwrap(enc + rmac + b"\x90\x00") == plain + b"\x90\x00"


@pytest.mark.parametrize(
    ("scheme", "aes", "kcvs"),
    [("EMV", False, ("C33013", "6F4CA6", "BB8179")), ("VISA2", False, ("2BE598", "58DA38", "3C328E")),
     ("KDF3", True, ("E79C05", "D1BD77", "3FDE8C"))],
)  # fmt: skip
def test_gp_diversification(scheme: str, aes: bool, kcvs: tuple[str, str, str]) -> None:
    k = scp03.diversify(h("404142434445464748494A4B4C4D4E4F"), scheme, h("00010203040506070809"))
    assert tuple(scp03.kcv(x, aes).hex().upper() for x in (k.enc, k.mac, k.dek)) == kcvs
    if scheme == "EMV":
        assert k.enc == h("0EF59FCBF8019B62E62AF6EA20B8BF25")
    if scheme == "KDF3":
        assert k.enc == h("808BC985A1069AD2A9AC94E0FE7B8843")
    assert k.enc.hex() not in repr(k).lower()


def test_kdf3_aes256() -> None:
    k = scp03.diversify(bytes(range(0x40, 0x60)), "KDF3", h("00010203040506070809"))
    assert len(k.enc) == 32
    assert tuple(scp03.kcv(x).hex().upper() for x in (k.enc, k.mac, k.dek)) == ("2972D2", "036F94", "5D57B8")
