"""One cardholder record → :class:`~cardlab.personalizer.batch.CardPersoData`.

:class:`CardPreparer` checks the profile against the key store once (key names and
usages, ICC key sizes against the issuer key, where the issuer certificates come from:
:mod:`.issuer`), then prepares one card at a time. Per card and application: ICC
master keys (EMV Book 2 A1.4 Option A, Option B for PANs over 16 digits) derived inside
the key store and wrapped under the transport key; Track 2 Equivalent Data and the
magnetic tracks with the service code; the AFL record layout; SDA (93) over exactly the
records the AFL marks for ODA plus the SDA tag list; for DDA/CDA a fresh ICC RSA key
pair (:mod:`.icc_key`) with its certificate (9F46/9F47/9F48) and CRT parts; the issuer
certificate objects (8F, 90, 92, 9F32); and every CPS DGI of ``docs/dgi-map.md``.
Secrets, the record DGIs that hold the PAN (:data:`PAN_TAGS`) and the station data are
:class:`~cardlab.personalizer.batch.Sealed` under the transport key.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cardlab.cardspec.scp03 import pad80
from cardlab.personalizer import certificates, cps, tracks
from cardlab.personalizer.batch import AppPersoData, CardPersoData, Rejection, Sealed
from cardlab.personalizer.keys import KeyStore, KeyStoreError, RsaPublicKey
from cardlab.personalizer.masking import mask_pan
from cardlab.personalizer.prepare.errors import CardProblem, PrepareError
from cardlab.personalizer.prepare.icc_key import IccKeyPair, generate_icc_key
from cardlab.personalizer.prepare.issuer import IssuerCertificates
from cardlab.personalizer.profile import Application, Profile
from cardlab.personalizer.records import Record, Rejected

__all__ = ["PAN_TAGS", "CardPreparer", "iter_prepared"]

#: tags whose value shows the PAN in clear (5A PAN, 57 Track 2 equivalent, 56 Track 1 data,
#: 9F6B Track 2 data) or recoverably: the ICC public key certificate 9F46 and the ICC PIN
#: encipherment public key certificate 9F2D hold the PAN (EMV Book 2 §6.4 table 14, §7.1),
#: and anyone with the scheme's CA public key can recover them
PAN_TAGS = frozenset({0x5A, 0x57, 0x56, 0x9F6B, 0x9F46, 0x9F2D})


@dataclass
class _AppContext:
    """What is the same on every card for one application of the profile."""

    app: Application
    values: dict[int, bytes]
    dgi_9104: bytes
    dgi_0d01: bytes
    dgi_0e01: bytes
    dgi_9010: bytes
    issuer: RsaPublicKey | None
    pan_records: frozenset[int]
    dgi_0d02: bytes = b""  # currency conversion table; empty: not sent
    issuer_objects: dict[str, dict[int, bytes]] = field(default_factory=dict)  # by BIN


class CardPreparer:
    """Prepares one card at a time for ``profile`` with the keys of ``keystore``.

    Everything is checked when it is built (key names and usages, ICC key sizes
    against the issuer key), so per-card failures are record problems only.
    """

    def __init__(
        self,
        profile: Profile,
        keystore: KeyStore,
        transport_key: str = "KEK",
        *,
        ca_key: str | None = None,
        issuer_cert_years: int | None = None,
        today: date | None = None,
        ca_public_keys: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.profile = profile
        self.keys = keystore
        self.kek = transport_key
        self.today = today or date.today()
        self.issuer_cert_years = issuer_cert_years
        #: CA public keys (``load_ca_public_keys``) besides the key store's, to verify certificates
        self.ca_public_keys = tuple(ca_public_keys)
        problems: list[str] = []
        info = self._info(transport_key, problems)
        if info is not None and info.usage != "KEK":
            problems.append(f"transport key {transport_key!r} has usage {info.usage}, not KEK")
        self.kek_kcv = info.kcv if info is not None and info.kcv is not None else b""
        #: where the issuer certificate objects come from (checked below, per application)
        self.issuer_certificates = IssuerCertificates(
            keystore, today=self.today, ca_key=ca_key, ca_public_keys=self.ca_public_keys,
            issuer_cert_years=issuer_cert_years,
        )  # fmt: skip
        self.apps: list[_AppContext] = []
        for i, app in enumerate(profile.applications):
            where = f"applications[{i}] ({app.name})"
            for what, name in (("imk_ac", app.keys.imk_ac), ("imk_smi", app.keys.imk_smi),
                               ("imk_smc", app.keys.imk_smc)):  # fmt: skip
                ki = self._info(name, problems, f"{where}.keys.{what}")
                if ki is not None and ki.usage != what.upper().replace("_", "-"):
                    problems.append(f"{where}.keys.{what}: key {name!r} has usage {ki.usage}")
            issuer: RsaPublicKey | None = None
            if app.oda:
                if app.keys.issuer_rsa is None or app.keys.ca_index is None:
                    problems.append(f"{where}: ODA needs keys.issuer_rsa and keys.ca_index")
                elif self._info(app.keys.issuer_rsa, problems, f"{where}.keys.issuer_rsa") is not None:
                    issuer = keystore.public_key(app.keys.issuer_rsa)
                    n_i = len(issuer.modulus_bytes)
                    if app.icc_key is not None and app.icc_key.size // 8 > n_i:
                        problems.append(
                            f"{where}.icc_key.size: {app.icc_key.size} bits is longer than the issuer key "
                            f"({n_i * 8} bits, Book 2 §6.1)"
                        )
                    problems += self.issuer_certificates.problems(app, issuer, where)
            self.apps.append(
                _AppContext(
                    app=app,
                    values=cps.profile_values(app),
                    dgi_9104=cps.gpo_9104(app),
                    dgi_0d01=cps.internal_0d01(app),
                    dgi_0e01=cps.get_data_0e01(app),
                    dgi_9010=cps.pin_try_9010(app.pin_try_limit),
                    issuer=issuer,
                    pan_records=frozenset(r.dgi for r in app.records if PAN_TAGS & set(r.tags)),
                    dgi_0d02=cps.conversion_0d02(app),
                )
            )
        if problems:
            raise PrepareError("; ".join(problems))

    def _info(self, name: str, problems: list[str], where: str = "") -> Any:
        try:
            return self.keys.info(name)
        except KeyStoreError:
            problems.append(f"{where + ': ' if where else ''}no key {name!r} in the key store")
            return None

    def verify_issuer_certificates(self, app: Application, issuer: RsaPublicKey, where: str) -> list[str]:
        """The profile's issuer certificates of ``app`` checked as a terminal will (EMV Book 2
        §5.3); the problems, each naming the profile field
        (:meth:`IssuerCertificates.verify_profile_certificates`)."""
        return self.issuer_certificates.verify_profile_certificates(app, issuer, where)

    # -- sealing

    def seal(self, data: bytes) -> Sealed:
        """``data`` encrypted under the transport key (AES-CBC, zero ICV, ISO 9797-1 method 2)."""
        return Sealed(self.kek, self.kek_kcv, self.keys.encrypt(self.kek, pad80(data)))

    # -- one card

    def prepare(self, record: Record, card_id: str | None = None) -> CardPersoData:
        """The card's perso data; raises :class:`CardProblem` for a record that does not fit."""
        pan = record.pan
        if not self.profile.pan_on_bin(pan):
            raise CardProblem("pan", f"not on a BIN of profile {self.profile.name} ({', '.join(self.profile.bins)})")
        dd = record.discretionary if record.discretionary is not None else tracks.DEFAULT_DISCRETIONARY
        if len(pan) + 8 + len(dd) > tracks.TRACK2_MAX:
            dd = dd[: max(0, tracks.TRACK2_MAX - 8 - len(pan))]
        apps = tuple(self._prepare_app(ctx, record, dd) for ctx in self.apps)
        sc = record.service_code or self.profile.applications[0].service_code
        try:
            stripe = tracks.stripe(
                pan, record.name, (record.expiry.year, record.expiry.month), sc, dd,
                (record.effective.year, record.effective.month) if record.effective else None,
            )  # fmt: skip
        except ValueError as e:
            raise CardProblem("name", str(e)) from None
        stations = {"pan": pan, **stripe.to_json(), "service_code": sc}
        fields = {
            "name": record.name,
            "expiry": str(record.expiry),
            "psn": record.psn,
            "service_code": sc,
        }
        if record.effective:
            fields["effective"] = str(record.effective)
        if record.language:
            fields["language"] = record.language
        return CardPersoData(
            card_id=card_id or f"{record.index:06d}",
            record_index=record.index,
            pan_masked=mask_pan(pan),
            apps=apps,
            fields=fields,
            stations=self.seal(json.dumps(stations, separators=(",", ":")).encode()),
        )

    def _prepare_app(self, ctx: _AppContext, record: Record, dd: str) -> AppPersoData:
        app = ctx.app
        pan, psn = record.pan, record.psn
        sc = record.service_code or app.service_code
        yymm = record.expiry.yymm
        exp = record.expiry.last_day()
        values = dict(ctx.values)
        try:
            values[0x57] = tracks.track2_equivalent(pan, yymm, sc, dd)
        except ValueError as e:
            raise CardProblem("discretionary", str(e)) from None
        values.update({
            0x5A: bytes.fromhex(pan + "F" * (len(pan) % 2)),
            0x5F20: record.name.encode("ascii"),
            0x5F24: bytes.fromhex(exp.strftime("%y%m%d")),
            0x5F25: bytes.fromhex(record.effective.first_day().strftime("%y%m%d")) if record.effective else b"",
            0x5F34: bytes.fromhex(psn),  # b"" (not on the card) when the profile omits an empty PSN
            0x5F30: tracks.service_code_bytes(sc),
            0x9F1F: tracks.track1_discretionary(dd).encode("ascii"),
            0x9F20: bytes.fromhex(dd + "F" * (len(dd) % 2)),
            0x9F0B: b"",
        })  # fmt: skip

        # issuer certificate objects first: a PAN no certificate covers is rejected before any key work
        issuer_values = self.issuer_certificates.objects(app, ctx.issuer, pan, ctx.issuer_objects) if app.oda else {}
        cert_end = self.issuer_certificates.end_of(issuer_values.get(0x90, b""))
        if cert_end is not None and record.expiry.last_day() > cert_end:
            # Book 2 §5.3 step 9: terminals refuse an expired issuer certificate, so the card
            # would fail offline data authentication for its last months
            raise CardProblem("expiry", f"{record.expiry} is after the issuer public key certificate's expiry "
                                        f"({cert_end:%m/%Y}) of {app.name}")

        # ICC master keys, wrapped inside the key store; sealed as one DGI 8000
        icc = self.keys.derive_icc_keys(  # no PSN: derived with 00 (EMV Book 2 Annex A1.4.1)
            pan, psn or "00", self.kek, "B" if len(pan) > 16 else "A",
            app.keys.imk_ac, app.keys.imk_smi, app.keys.imk_smc,
        )  # fmt: skip
        mk = b"".join(self.keys.unwrap(w) for w in (icc.ac, icc.smi, icc.smc))
        sealed_8000 = self.seal(mk)
        del mk
        secret_dgis: list[tuple[int, bytes | Sealed]] = [(0x8000, sealed_8000)]
        if app.offline_pin:
            secret_dgis.append((0x8010, self.seal(cps.pin_block_8010(record.pin))))

        icc_key: IccKeyPair | None = None
        if app.oda:
            values.update(issuer_values)
            if app.icc_key is not None:
                icc_key = generate_icc_key(app.icc_key.size, app.icc_key.exponent)
                exponent = app.icc_key.exponent
                values[0x9F47] = exponent.to_bytes((exponent.bit_length() + 7) // 8, "big")
            # the signed records first: 93 and 9F46 are computed over them
            signed = {(r.sfi, r.number): cps.build_record(r, values) for r in app.oda_records()}
            sda_data = cps.static_data(app, signed)
            assert ctx.issuer is not None and app.keys.issuer_rsa is not None
            signer = functools.partial(self.keys.rsa_sign_raw, app.keys.issuer_rsa)
            n_i = len(ctx.issuer.modulus_bytes)
            if "SDA" in app.oda:
                dac = record.index.to_bytes(8, "big")[-2:]
                values[0x93] = certificates.signed_static_data(signer, n_i, sda_data, dac)
            if icc_key is not None:
                size = (icc_key.n.bit_length() + 7) // 8
                mmyy = bytes.fromhex(f"{record.expiry.month:02d}{record.expiry.year % 100:02d}")
                serial = record.index.to_bytes(8, "big")[-3:]
                cert, rem = certificates.icc_certificate(
                    signer, n_i, pan, mmyy, serial, icc_key.n.to_bytes(size, "big"), values[0x9F47], sda_data
                )
                values[0x9F46], values[0x9F48] = cert, rem
                k = icc_key
                secret_dgis += [(g, self.seal(v)) for g, v in cps.crt_dgis(k.p, k.q, k.d, size)]
        try:
            records = cps.build_records(app, values)
        except KeyError as e:  # a profile tag this preparer cannot fill: a profile problem
            raise PrepareError(f"{app.name}: no value for tag {e.args[0]:X}") from None
        except ValueError as e:
            raise CardProblem("record", str(e)) from None

        # records holding the PAN (PAN_TAGS) are sealed too: the PAN is protected at rest
        # (PCI DSS); the card takes any DGI inside an encrypted STORE DATA block
        pan_records = ctx.pan_records
        dgis: list[tuple[int, bytes | Sealed]] = [
            (g, self.seal(v) if g in pan_records else v) for g, v in cps.record_dgis(records)
        ]
        dgis += [
            (0x9102, cps.fci_9102(app, record.language)),
            (0x9104, ctx.dgi_9104),
            (0x9000, cps.kcv_9000((icc.ac.kcv, icc.smi.kcv, icc.smc.kcv))),
            (0x0D01, ctx.dgi_0d01),
            (0x0E01, ctx.dgi_0e01),
        ]
        if ctx.dgi_0d02:
            dgis.append((0x0D02, ctx.dgi_0d02))
        dgis += cps.contactless_dgis(app, record.language)
        if app.offline_pin:
            dgis.append((0x9010, ctx.dgi_9010))
        dgis += secret_dgis
        return AppPersoData(
            aid=app.aid,
            load_file=cps.EMV_LOAD_FILE_AID,
            module=cps.EMV_MODULE_AID,
            privileges=cps.PRIVILEGES,
            install_params=cps.INSTALL_PARAMS,
            dgis=tuple(dgis),
        )


def iter_prepared(preparer: CardPreparer, records: Iterator[Record | Rejected]) -> Iterator[CardPersoData | Rejection]:
    """Prepare a stream of records without writing a batch (tests, benchmarks)."""
    for item in records:
        if isinstance(item, Rejected):
            yield Rejection(item.index, item.record_id, item.field, item.message)
            continue
        try:
            yield preparer.prepare(item)
        except CardProblem as e:
            yield Rejection(item.index, item.masked_pan, e.field, str(e))
