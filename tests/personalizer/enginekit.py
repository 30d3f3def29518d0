"""TEST-ONLY helpers for the perso engine tests: a prepared batch (the real
``prepare()`` on the SDA sample profile), a card stock, and a stand-in perso
script executor with the API of ``cardlab.personalizer.script.execute``.

The stand-in is used where a test needs a card to fail or to be slow at a
given step; it does what the EMV CPS script does (SCP03 with keys from the
KMC and the card's KDD, INSTALL, INSTALL [for personalization], STORE DATA
with secrets re-encrypted under the DEK, SET STATUS SECURED).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from prepkit import VISA, app_commands, make_keystore, sda_profile  # noqa: F401

from cardlab.cardspec import tlv
from cardlab.cardspec.scp03 import HostSession, StaticKeys
from cardlab.personalizer.batch import CardPersoData
from cardlab.personalizer.script.errors import StepFailed
from cardlab.personalizer.keys import KeyStore

KMC_NAME = "TEST-KMC-VISA"


def attempts_started(db_path: Path) -> int:
    """Rows in a job database's attempts table (0 before the engine made it)."""
    if not db_path.exists():
        return 0
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return int(con.execute("SELECT COUNT(*) FROM attempts").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        con.close()


def kill_during_batch(code: str, env: dict[str, str], db_path: Path, pause: float,
                      *, start_timeout: float = 60.0) -> tuple[bool, str]:
    """Run the batch runner ``code`` in its own process group and SIGKILL it
    ``pause`` seconds after it has started a new attempt (so that a kill is
    driven by the batch's progress, not by how fast this machine starts
    Python). Returns (killed, stderr tail); killed is False when the runner
    ended on its own first."""
    before = attempts_started(db_path)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + start_timeout
    while proc.poll() is None and attempts_started(db_path) <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(pause)
    if proc.poll() is not None:
        _, err = proc.communicate()
        return False, err.decode(errors="replace")[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stderr is not None
    proc.stderr.close()
    return True, ""


def luhn(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


def write_records(path: Path, count: int, bad: tuple[int, ...] = ()) -> Path:
    """``count`` cardholder records; the 1-based indexes in ``bad`` get a wrong Luhn digit."""
    lines = ["pan,psn,expiry,effective,name,pin"]
    for i in range(1, count + 1):
        pan = luhn(f"476173900{i:06d}")
        if i in bad:
            pan = pan[:-1] + str((int(pan[-1]) + 1) % 10)
        name = "HOLDER/" + "".join(chr(65 + int(c)) for c in str(i))
        lines.append(f"{pan},01,2031-0{1 + i % 9},2025-01,{name},{1000 + i}")
    path.write_text("\n".join(lines) + "\n")
    return path


def make_batch(tmp: Path, count: int = 6, bad: tuple[int, ...] = (3,)) -> tuple[Path, Path]:
    """A prepared batch (``tmp/batch``) and its key store file (``tmp/keys.json``)."""
    from cardlab.personalizer.prepare import prepare

    profile = sda_profile(tmp)
    ks = make_keystore([profile])
    if KMC_NAME not in ks:
        ks.add_symmetric(KMC_NAME, "AES", "KMC", ks.clear_value("KMC"))
    keys = tmp / "keys.json"
    ks.save(keys)
    records = write_records(tmp / "records.csv", count, bad)
    prepare(profile, records, ks, tmp / "batch", today=date(2025, 6, 1))
    return tmp / "batch", keys


def make_cards(tmp: Path, keys: Path, count: int, name: str = "stock") -> Path:
    from cardlab.personalizer.keys import open_keystore
    from cardlab.personalizer.stock import make_stock

    with open_keystore(str(keys)) as ks:
        def div(kdd: bytes) -> tuple[bytes, bytes, bytes]:
            k = ks.diversify_card_keys(KMC_NAME, "KDF3", kdd)
            return k.enc, k.mac, k.dek

        make_stock(tmp / name, count, div, "kdf3")
    return tmp / name


class FakeStepFailed(StepFailed):
    """The stand-in's step failure: the interpreter's own exception type, so the engine reports it
    exactly as it reports a real script's."""


def stand_in_execute(
    script: Any,
    card: CardPersoData,
    transmit: Callable[[bytes], bytes],
    keystore: KeyStore,
    *,
    profile: Any = None,
    on_step: Callable[..., None] | None = None,
    delay: float = float(os.environ.get("ENGINEKIT_DELAY", "0")),
) -> dict[str, Any]:
    """The EMV CPS personalization, as the real script does it (see module doc)."""
    step = 0

    def ok(resp: bytes, name: str) -> bytes:
        nonlocal step
        step += 1
        sw = int.from_bytes(resp[-2:], "big")
        if sw != 0x9000:
            raise FakeStepFailed(step, name, sw, ("9000",))
        if on_step is not None:
            on_step(name)
        if delay:
            time.sleep(delay)
        return resp[:-2]

    ok(transmit(bytes.fromhex("00A4040008A00000015100000000")), "select ISD")
    kdd = tlv.find(ok(transmit(bytes.fromhex("80CA00CF00")), "get KDD"), 0xCF)
    assert kdd is not None
    k = keystore.diversify_card_keys(KMC_NAME, "KDF3", kdd.value)
    hs = HostSession(transmit, StaticKeys(k.enc, k.mac, k.dek, 0x30))
    hs.open(0x33)
    for app in card.apps:
        for name, apdu in app_commands(app, hs, keystore):
            ok(hs.send(apdu), name)
    ok(hs.send(bytes.fromhex("80F0800F00")), "set status secured")
    return {"steps": step}


def pans_on_image(path: Path) -> list[str]:
    """The PANs (tag 5A) in the EMV records of every application instance of a card image — what
    a terminal would read from the card; [] for a card that holds no cardholder data."""
    from cardlab.emulator import Card

    pans = []
    for inst in Card.load(path).state.instances:
        records = inst.state.get("records") or {}
        for value in records.values():
            found = tlv.find(bytes.fromhex(value), 0x5A)
            if found is not None:
                pans.append(found.value.hex().upper().rstrip("F"))
    return pans


def record_of_pan(pan: str) -> int:
    """The 1-based record index of a PAN written by :func:`write_records`."""
    return int(pan[9:15])
