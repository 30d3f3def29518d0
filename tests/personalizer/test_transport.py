"""Sealed issuer → bureau files: round trips, wrong keys, tampering, truncation, records through seals."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from cardlab.personalizer.records import Record, RecordsError, read_records
from cardlab.personalizer.transport import (
    MAGIC,
    TransportError,
    TransportKeys,
    is_sealed,
    load_private_key,
    load_public_key,
    open_sealed,
    seal,
    sealed_name,
)

ROOT = Path(__file__).resolve().parents[2]
KEYS = ROOT / "vectors/transport"
TODAY = date(2026, 1, 15)


def _rsa_priv(name: str) -> rsa.RSAPrivateKey:
    k = load_private_key(KEYS / f"{name}.key.pem")
    assert isinstance(k, rsa.RSAPrivateKey)
    return k


def _rsa_pub(name: str) -> rsa.RSAPublicKey:
    k = load_public_key(KEYS / f"{name}.pub.pem")
    assert isinstance(k, rsa.RSAPublicKey)
    return k


BUREAU = _rsa_priv("TEST-ONLY-bureau-rsa2048")
BUREAU_PUB = _rsa_pub("TEST-ONLY-bureau-rsa2048")
ISSUER = _rsa_priv("TEST-ONLY-issuer-signing-rsa2048")
ISSUER_PUB = _rsa_pub("TEST-ONLY-issuer-signing-rsa2048")
ISSUER_ED = load_private_key(KEYS / "TEST-ONLY-issuer-signing-ed25519.key.pem")
ISSUER_ED_PUB = load_public_key(KEYS / "TEST-ONLY-issuer-signing-ed25519.pub.pem")
OTHER_RSA = rsa.generate_private_key(65537, 1024)  # fast, only to be a wrong key


def _open(path: Path, recipient: rsa.RSAPrivateKey = BUREAU, verify: object = ISSUER_PUB) -> bytes:
    return b"".join(open_sealed(path, recipient, verify))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 1000])
def test_round_trip_chunk_boundaries(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * 4
    src = tmp_path / "in.csv"
    src.write_bytes(data[:size])
    out = tmp_path / "in.csv.sealed"
    seal(src, out, BUREAU_PUB, ISSUER, chunk_size=100)
    assert is_sealed(out) and not is_sealed(src)
    assert sealed_name(out) == "in.csv"
    assert _open(out) == data[:size]
    if size >= 16:
        assert data[:16] not in out.read_bytes()  # encrypted


def test_ed25519_signer(tmp_path: Path) -> None:
    assert isinstance(ISSUER_ED, ed25519.Ed25519PrivateKey)
    src = tmp_path / "r.jsonl"
    src.write_text('{"a": 1}\n')
    out = tmp_path / "r.sealed"
    seal(src, out, BUREAU_PUB, ISSUER_ED)
    assert _open(out, verify=ISSUER_ED_PUB) == b'{"a": 1}\n'
    with pytest.raises(TransportError, match="signed by another key"):
        _open(out, verify=ISSUER_PUB)


def test_wrong_recipient_and_signer(tmp_path: Path) -> None:
    src = tmp_path / "x.csv"
    src.write_text("hello\n")
    out = tmp_path / "x.sealed"
    seal(src, out, BUREAU_PUB, ISSUER)
    with pytest.raises(TransportError, match="another recipient"):
        _open(out, recipient=OTHER_RSA)
    with pytest.raises(TransportError, match="signed by another key"):
        _open(out, verify=OTHER_RSA.public_key())


def _sealed(tmp_path: Path) -> Path:
    src = tmp_path / "t.csv"
    src.write_bytes(b"0123456789" * 50)
    out = tmp_path / "t.sealed"
    seal(src, out, BUREAU_PUB, ISSUER, chunk_size=128)
    return out


def test_every_flipped_byte_is_detected_before_anything_is_yielded(tmp_path: Path) -> None:
    out = _sealed(tmp_path)
    original = out.read_bytes()
    # every byte of the magic, header, chunks and signature; a stride keeps the test fast
    for pos in list(range(0, len(original), 7)) + [len(original) - 1]:
        bad = bytearray(original)
        bad[pos] ^= 0x01
        out.write_bytes(bytes(bad))
        gen = open_sealed(out, BUREAU, ISSUER_PUB)
        with pytest.raises(TransportError):
            next(gen)


def test_truncation_and_trailing_data(tmp_path: Path) -> None:
    out = _sealed(tmp_path)
    original = out.read_bytes()
    for cut in (len(MAGIC) + 2, len(original) // 2, len(original) - 300, len(original) - 1):
        out.write_bytes(original[:cut])
        with pytest.raises(TransportError):
            _open(out)
    out.write_bytes(original + b"\x00")
    with pytest.raises(TransportError, match="after the signature"):
        _open(out)


def test_not_sealed(tmp_path: Path) -> None:
    p = tmp_path / "plain.csv"
    p.write_text("pan\n")
    with pytest.raises(TransportError, match="not a cardlab sealed file"):
        _open(p)


def test_records_reader_opens_sealed_files(tmp_path: Path) -> None:
    keys = TransportKeys(BUREAU, ISSUER_PUB)
    shipped = list(read_records(KEYS / "sample.csv.sealed", keys=keys, today=TODAY))
    plain = list(read_records(ROOT / "vectors/records/sample.csv", today=TODAY))
    assert len(shipped) == 10 and all(isinstance(r, Record) for r in shipped)
    assert [repr(r) for r in shipped] == [repr(r) for r in plain]
    # JSON Lines: the format comes from the name recorded in the seal
    out = tmp_path / "anything.bin"
    seal(ROOT / "vectors/records/sample.jsonl", out, BUREAU_PUB, ISSUER, chunk_size=37)
    from_jsonl = list(read_records(out, keys=keys, today=TODAY))
    assert [(r.pan, r.psn, r.name, r.pin) for r in from_jsonl if isinstance(r, Record)] == [
        (r.pan, r.psn, r.name, r.pin) for r in plain if isinstance(r, Record)
    ]
    with pytest.raises(RecordsError, match="transport keys are needed"):
        next(read_records(out, today=TODAY))


def test_tampered_sealed_records_yield_nothing(tmp_path: Path) -> None:
    out = tmp_path / "s.sealed"
    seal(ROOT / "vectors/records/sample.csv", out, BUREAU_PUB, ISSUER)
    data = bytearray(out.read_bytes())
    data[-300] ^= 0x80  # inside the last chunk, after many records
    out.write_bytes(bytes(data))
    got: list[object] = []
    with pytest.raises(TransportError):
        for r in read_records(out, keys=TransportKeys(BUREAU, ISSUER_PUB), today=TODAY):
            got.append(r)  # noqa: PERF402 - a loop, to see whether anything came before the error
    assert got == []


def test_cli_seal_then_prepare_opens_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cardlab perso seal` (the issuer's side) and `perso prepare --bureau-key --issuer-public`
    (the bureau's): the same records come out; a flipped byte is refused before any record."""
    from cardlab.cli import main
    from cardlab.demo import demo_keystore

    src = ROOT / "vectors/records/sample.csv"
    sealed = tmp_path / "sample.csv.sealed"
    for signer in ("TEST-ONLY-issuer-signing-rsa2048.key.pem", "TEST-ONLY-issuer-signing-ed25519.key.pem"):
        assert main(["perso", "seal", str(src), "--out", str(sealed), "--force",
                     "--bureau-public", str(KEYS / "TEST-ONLY-bureau-rsa2048.pub.pem"),
                     "--issuer-key", str(KEYS / signer)]) == 0  # fmt: skip
        pub = signer.replace(".key.pem", ".pub.pem")
        opened = list(read_records(sealed, keys=TransportKeys(BUREAU, load_public_key(KEYS / pub)), today=TODAY))
        assert [repr(r) for r in opened] == [repr(r) for r in read_records(src, today=TODAY)]
    assert "4761739001010101" not in capsys.readouterr().out
    keys = demo_keystore(tmp_path / "keys.json")
    prep = ["perso", "prepare", "--profile", str(ROOT / "vectors/profiles/visa-cvn18.yaml"), "--keys", str(keys),
            "--bureau-key", str(KEYS / "TEST-ONLY-bureau-rsa2048.key.pem"),
            "--issuer-public", str(KEYS / "TEST-ONLY-issuer-signing-ed25519.pub.pem")]
    assert main([*prep, "--records", str(sealed), "--out", str(tmp_path / "b1")]) == 0
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x01
    sealed.write_bytes(bytes(data))
    assert main([*prep, "--records", str(sealed), "--out", str(tmp_path / "b2")]) != 0
    assert not (tmp_path / "b2" / "cards.jsonl").exists() or not (tmp_path / "b2" / "cards.jsonl").read_text()


def test_cli_seal_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cardlab.cli import main

    src = ROOT / "vectors/records/sample.csv"
    base = ["perso", "seal", str(src), "--bureau-public", str(KEYS / "TEST-ONLY-bureau-rsa2048.pub.pem")]
    out = tmp_path / "x.sealed"
    out.write_text("keep")
    assert main([*base, "--issuer-key", str(KEYS / "TEST-ONLY-issuer-signing-rsa2048.key.pem"), "--out", str(out)]) == 2
    assert out.read_text() == "keep"
    # an Ed25519 key cannot wrap the data key (RSA-OAEP): refused
    assert main(["perso", "seal", str(src), "--bureau-public", str(KEYS / "TEST-ONLY-issuer-signing-ed25519.pub.pem"),
                 "--issuer-key", str(KEYS / "TEST-ONLY-issuer-signing-rsa2048.key.pem"),
                 "--out", str(tmp_path / "y.sealed")]) == 2  # fmt: skip
    assert main([*base, "--issuer-key", str(KEYS / "TEST-ONLY-issuer-signing-rsa2048.key.pem"),
                 "--passphrase-env", "CARDLAB_NO_SUCH_VAR", "--out", str(tmp_path / "z.sealed")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "must be RSA" in err and "CARDLAB_NO_SUCH_VAR is not set" in err and "Traceback" not in err
    assert not (tmp_path / "y.sealed").exists() and not (tmp_path / "z.sealed").exists()
