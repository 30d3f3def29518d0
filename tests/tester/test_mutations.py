"""Mutation tests: single corruptions of a prepared card (a changed byte in a
data object, a wrong ICC key — AC, SMI, SMC —, a wrong PIN, a dropped record, a wrong certificate,
a wrong life cycle, a used card); certification must fail on the rule that
names the defect. The detection rate is printed and recorded in
reports/mutation-detection.json (under the test's temporary directory)."""

from __future__ import annotations

from dataclasses import replace

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from Crypto.Cipher import DES3

import certkit
from cardlab.tester import certify, rules
from cardlab.tester.tlv import encode, parse

warnings.filterwarnings("ignore", category=DeprecationWarning)

Apps = list[tuple[bytes, list[tuple[int, bytes]]]]

#: tags whose corruption is found through the certificates rather than a value rule
KEY_MATERIAL = {
    0x90: {"CERT-ISS-003", "CERT-ISS-004"},
    0x92: {"CERT-ISS-004"},
    0x9F32: {"CERT-ISS-003", "CERT-ISS-004"},
    0x93: {"SDA-001"},
    0x9F46: {"CERT-ICC-002", "CERT-ICC-003"},
    0x9F48: {"CERT-ICC-003"},
}


#: mutations certification is allowed to miss, each with its reason (none today: 57, 9F1F and
#: 9F20 are derived whole from the record, docs/profile.md "Track data")
BLIND_SPOTS: set[str] = set()
#: mutations the emulated card refuses at personalization (it checks the ICC key exponent
#: 9F47 against the ICC private key it holds): they never reach certification
REFUSED_BY_CARD = {"byte of 9F47 in record 3/4", "byte of 9F47 in record 3/3"}


def _flip(data: bytes, tag: int) -> tuple[bytes, bool]:
    out, hit = b"", False
    for t in parse(data):
        if t.constructed:
            inner, h = _flip(t.value, tag)
            out += encode(t.tag, inner)
            hit |= h
        elif t.tag == tag and not hit and t.value:
            out += encode(t.tag, t.value[:-1] + bytes((t.value[-1] ^ 0x01,)))
            hit = True
        else:
            out += t.raw
    return out, hit


def flip(app_i: int, dgi: int, tag: int) -> Callable[[Apps], None]:
    def mutate(apps: Apps) -> None:
        aid, dgis = apps[app_i]
        for i, (d, v) in enumerate(dgis):
            if d == dgi:
                new, hit = _flip(v, tag)
                assert hit
                dgis[i] = (d, new)
                return
        raise AssertionError(f"no DGI {dgi:04X}")

    return mutate


def replace_dgi(app_i: int, dgi: int, fn: Callable[[bytes], bytes]) -> Callable[[Apps], None]:
    def mutate(apps: Apps) -> None:
        dgis = apps[app_i][1]
        for i, (d, v) in enumerate(dgis):
            if d == dgi:
                dgis[i] = (d, fn(v))

    return mutate


def wrong_key(app_i: int, which: int) -> Callable[[Apps], None]:
    """Replace one ICC master key (0 AC, 1 SMI, 2 SMC) and its KCV consistently."""

    def mutate(apps: Apps) -> None:
        dgis = dict(apps[app_i][1])
        keys = bytearray(dgis[0x8000])
        keys[16 * which : 16 * which + 16] = bytes.fromhex("1F2E3D4C5B6A79880123456789ABCDEF")
        kcv = bytearray(dgis[0x9000])
        kcv[3 * which : 3 * which + 3] = DES3.new(bytes(keys[16 * which : 16 * which + 16]), DES3.MODE_ECB).encrypt(bytes(8))[:3]
        replace_dgi(app_i, 0x8000, lambda _v: bytes(keys))(apps)
        replace_dgi(app_i, 0x9000, lambda _v: bytes(kcv))(apps)

    return mutate


def wrong_pin(apps: Apps) -> None:
    replace_dgi(0, 0x8010, lambda v: bytes.fromhex("249999FFFFFFFFFF"))(apps)


def drop_record(app_i: int, sfi: int, rec: int) -> Callable[[Apps], None]:
    """Remove a record and its AFL mention (the card refuses a missing named record)."""

    def mutate(apps: Apps) -> None:
        aid, dgis = apps[app_i]
        dgis[:] = [(d, v) for d, v in dgis if d != (sfi << 8) | rec]

        def fix(v: bytes) -> bytes:
            items = {t.tag: t.value for t in parse(v)}
            afl = items[0x94]
            new = b""
            for i in range(0, len(afl), 4):
                e = bytearray(afl[i : i + 4])
                if e[0] >> 3 == sfi and e[1] <= rec <= e[2]:
                    if e[1] == e[2]:
                        continue
                    if rec == e[2]:
                        e[2] -= 1
                    elif rec == e[1]:
                        e[1] += 1
                new += bytes(e)
            return encode(0x82, items[0x82]) + encode(0x94, new)

        replace_dgi(app_i, 0x9104, fix)(apps)
        replace_dgi(app_i, 0x9207, fix)(apps)  # the contactless AFL (DGI 9207) names it too

    return mutate


def certificate_from(other: Apps, tag: int) -> Callable[[Apps], None]:
    """Put another card's certificate (tag) into this card's record holding it."""
    src = next(v for _a, dgis in other[:1] for d, v in dgis if d < 0x1F00 and any(t.tag == tag for t in parse(v)[0].children()))
    value = next(t.value for t in parse(src)[0].children() if t.tag == tag)

    def mutate(apps: Apps) -> None:
        dgis = apps[0][1]
        for i, (d, v) in enumerate(dgis):
            if d < 0x1F00 and any(t.tag == tag for t in parse(v)[0].children()):
                body = b"".join(encode(t.tag, value) if t.tag == tag else t.raw for t in parse(v)[0].children())
                dgis[i] = (d, encode(0x70, body))

    return mutate


def issuer_cert_of_other_bin(apps: Apps) -> None:
    doc = json.loads((certkit.prepkit.VECTORS / "test-keystore.json").read_text())
    c = doc["issuer_certificates"][0]
    for i, (d, v) in enumerate(apps[0][1]):
        if d < 0x1F00 and any(t.tag == 0x90 for t in parse(v)[0].children()):
            repl = {0x90: bytes.fromhex(c["certificate_90"]), 0x92: bytes.fromhex(c["remainder_92"]), 0x9F32: bytes.fromhex(c["exponent_9F32"])}
            body = b"".join(encode(t.tag, repl.get(t.tag, t.value)) for t in parse(v)[0].children())
            apps[0][1][i] = (d, encode(0x70, body))


def _mutations(p: certkit.Prepared) -> list[tuple[str, Callable[[Apps], None], set[str], dict[str, object]]]:
    base = p.clear(0)
    out: list[tuple[str, Callable[[Apps], None], set[str], dict[str, object]]] = []
    # a changed byte in every data object of the first application's records, FCI and GPO data
    for dgi, value in base[0][1]:
        if dgi < 0x1F00:
            for t in parse(value)[0].children():
                want = KEY_MATERIAL.get(t.tag) or {rules.rule_for_tag(t.tag)}
                out.append((f"byte of {t.tag:X} in record {dgi >> 8}/{dgi & 0xFF}", flip(0, dgi, t.tag), want, {}))
        elif dgi == 0x9102:
            for t in parse(value):
                for leaf in (t.children() if t.constructed else [t]):
                    out.append((f"byte of {leaf.tag:X} in the FCI", flip(0, 0x9102, leaf.tag), {rules.rule_for_tag(leaf.tag)}, {}))
        elif dgi == 0x9104:
            out.append(("byte of the AIP", flip(0, 0x9104, 0x82), {"DATA-AIP-001"}, {}))
    out += [
        ("card-internal: cryptogram version DF01", flip(0, 0x0D01, 0xDF01), {"KEY-AC-002", "KEY-AC-001"}, {}),
        ("card-internal: DKI DF02", flip(0, 0x0D01, 0xDF02), {"KEY-AC-002"}, {}),
        ("card-internal: response format DF16", replace_dgi(0, 0x0D01, lambda v: _set(v, 0xDF16, b"\x01" if _get(v, 0xDF16) != b"\x01" else b"\x02")), {"GPO-001"}, {}),
        ("wrong ICC AC key (IMK-AC)", wrong_key(0, 0), {"KEY-AC-001"}, {}),
        ("wrong ICC SMI key (IMK-SMI)", wrong_key(0, 1), {"KEY-SMI-001", "KEY-SMI-002"}, {"destructive": True}),
        ("wrong ICC SMC key (IMK-SMC)", wrong_key(0, 2), {"KEY-SMC-001"}, {"destructive": True}),
        ("wrong PIN", wrong_pin, {"KEY-PIN-001"}, {}),
        ("PIN try counter below the limit", replace_dgi(0, 0x9010, lambda v: bytes((v[0], v[0] - 1))), {"STATE-PTC-001"}, {"fresh": True}),
        ("dropped record 1/1", drop_record(0, 1, 1), {"DATA-AFL-001"}, {}),
        ("issuer certificate of another BIN", issuer_cert_of_other_bin, {"CERT-ISS-005"}, {}),
        ("ICC certificate of another card", certificate_from(p.clear(1), 0x9F46), {"CERT-ICC-PAN-001"}, {}),
        ("wrong life cycle: personalization not completed", lambda apps: None, {"LIFE-APP-002"}, {"last_block": False}),
        ("used card: 20 transactions before certification", lambda apps: None, {"STATE-ATC-001"}, {"used": 20, "fresh": True}),
    ]
    return out


def _get(v: bytes, tag: int) -> bytes | None:
    return next((t.value for t in parse(v) if t.tag == tag), None)


def _set(v: bytes, tag: int, value: bytes) -> bytes:
    return b"".join(encode(tag, value) if t.tag == tag else t.raw for t in parse(v))


def _use(card: object, aid: bytes, n: int) -> None:
    tx = card.transmit  # type: ignore[attr-defined]
    for _ in range(n):
        tx(bytes((0, 0xA4, 4, 0, len(aid))) + aid + b"\x00")
        r = tx(bytes.fromhex("80A80000048302000000"))
        if r[-2:] == b"\x67\x00":
            tx(bytes.fromhex("80A8000002830000"))


@pytest.mark.parametrize("name", ["visa-cvn18", "mastercard-cvn16"])
def test_mutations_fail_on_the_rule_naming_the_defect(name: str, tmp_path: Path) -> None:
    p = certkit.prepare_sample(name, tmp_path)
    prof, rec, keys = certkit.sources_for(p)
    detected: list[tuple[str, list[str], list[str]]] = []
    missed: list[tuple[str, list[str], list[str]]] = []
    refused: list[str] = []
    for what, mutate, want, opts in _mutations(p):
        apps = [(aid, list(dgis)) for aid, dgis in p.clear(0)]
        mutate(apps)
        try:
            card = certkit.card_from_dgis(apps, last_block=bool(opts.get("last_block", True)))
        except AssertionError:
            refused.append(what)  # the card itself refused the corrupted data
            continue
        if opts.get("used"):
            _use(card, apps[0][0], int(opts["used"]))  # type: ignore[call-overload]
        # counters are judged against the card's history unless the profile says fresh from perso
        judged = replace(prof, certify_as="fresh") if opts.get("fresh") else prof
        rep = certify.certify_card(certkit.channel(card), judged, rec, keys, today=certkit.TODAY, destructive=bool(opts.get("destructive")))
        failed = rep.failed_rules()
        assert rep.verdict == "fail" or not (want & failed), what
        (detected if want & failed else missed).append((what, sorted(want), sorted(failed)[:6]))
    total = len(detected) + len(missed)
    rate = len(detected) / total
    record = {"profile": name, "mutations": total, "detected": len(detected), "rate": round(rate, 4),
              "missed": missed, "refused_by_card": refused}  # fmt: skip
    out = Path(os.environ.get("CARDLAB_MUTATION_REPORT", tmp_path)) / f"mutation-detection-{name}.json"
    out.write_text(json.dumps(record, indent=1))
    print(f"\n{name}: {len(detected)}/{total} mutations detected on the rule naming the defect ({rate:.1%});"
          f" {len(refused)} refused by the card; missed: {[m[0] for m in missed]}")  # fmt: skip
    assert total >= 30
    # every mutation is caught on the rule naming the defect, except the listed blind spots
    assert {m[0] for m in missed} <= BLIND_SPOTS, missed
    assert set(refused) <= REFUSED_BY_CARD, refused
