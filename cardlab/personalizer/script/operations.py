"""The operations of perso scripts, one method each: the APDUs of SELECT,
SCP03 opening, INSTALL, STORE DATA, CREATE FILE, UPDATE BINARY / RECORD,
APPEND RECORD, PUT KEY, SET STATUS and raw APDUs."""

from __future__ import annotations

import contextlib

from cardlab.cardspec import tlv
from cardlab.cardspec.scp03 import HostSession, ScpError, StaticKeys, dek_encrypt, pad80

from ..batch import Sealed
from .apdus import (
    UPDATE_BINARY_CHUNK,
    Command,
    aes_kcv,
    compact_acl,
    install_params,
    level_names,
    lv,
    parse_command,
    split_chunks,
)
from .errors import StepFailed
from .evaluation import as_bytes, as_data, eval_value
from .model import APP_STATES, CARD_STATES, CONDITIONS, DF_MODES, EF_MODES, FILE_TYPES, INSTALL_KINDS, Step
from .storedata import dgi_data, plan_store_blocks
from .values import Data, DgiList, EvalError, Piece, Secret
from .walker import Walker, sw_matches

__all__ = ["Runner"]


class Runner(Walker):
    """Runs (or, without ``transmit``, renders) the steps of a script."""

    def operate(self, step: Step) -> tuple[int, int | None, str]:
        op = step.op
        before = self.apdus
        sw: int | None = None
        handler = getattr(self, f"op_{op}")
        description, sw = handler(step)
        return self.apdus - before, sw, description

    def op_select(self, step: Step) -> tuple[str, int | None]:
        self.close_channel()
        if "aid" in step.args:
            aid = self.bytes_arg(step, "aid")
            cmd = Command(b"\x00\xa4\x04" + bytes((self.int_arg(step, "p2", 0),)), Data.of(aid), b"\x00",
                          "SELECT by name")
            desc = f"SELECT {aid.hex().upper()}"
        elif "fid" in step.args:
            fid = self.bytes_arg(step, "fid")
            cmd = Command(b"\x00\xa4\x00" + bytes((self.int_arg(step, "p2", 0x0C),)), Data.of(fid), b"",
                          "SELECT by file identifier")
            desc = f"SELECT FID {fid.hex().upper()}"
        else:
            path = self.bytes_arg(step, "path")
            cmd = Command(b"\x00\xa4\x08" + bytes((self.int_arg(step, "p2", 0x0C),)), Data.of(path), b"",
                          "SELECT by path from the MF")
            desc = f"SELECT path {path.hex().upper()}"
        _, sw = self.exchange(step, cmd)
        return desc, sw

    def op_open_scp03(self, step: Step) -> tuple[str, int | None]:
        level = self.int_arg(step, "level", 0x33)
        kvn = self.int_arg(step, "key_version", 0)
        host_challenge = self.bytes_arg(step, "host_challenge", b"") or None
        if "kmc" in step.args:
            kmc = self.str_arg(step, "kmc")
            scheme = self.str_arg(step, "scheme").upper()
            source = f"KMC {kmc} diversified ({scheme}) by the card's KDD" if scheme != "NONE" else f"KMC {kmc}"
        else:
            kmc, scheme = "", ""
            source = "static keys"
        level_text = f"{level:02X}"
        desc = f"open SCP03 level {level_text} ({source})"
        self.block_counter = 0
        if self.transmit is None:
            self.apdus += 2
            self.lines.append(f"80 50 {kvn:02X} 00 08 <host challenge> 00   ; INITIALIZE UPDATE ({source})")
            self.lines.append(f"84 82 {level_text} 00 10 <host cryptogram> <C-MAC>   ; EXTERNAL AUTHENTICATE")
            self.lines.append(f"# commands below are sent wrapped at level {level_text} ({level_names(level)});"
                              " shown before wrapping")
            self.channel_open = True
            return desc, None
        keystore = self.env.keystore
        runner = self
        static: StaticKeys | None = None
        if not kmc:
            keys = {k: as_bytes(v, f"open_scp03.keys.{k}") for k, v in self.value(step, "keys").items()}
            try:
                static = StaticKeys(keys["enc"], keys["mac"], keys["dek"], kvn)
            except ValueError as exc:
                raise EvalError(f"open_scp03.keys: {exc}") from None
        transmit = self.transmit
        assert transmit is not None

        def card_keys(kdd: bytes, answered_kvn: int) -> StaticKeys:
            if static is not None:
                return static
            assert keystore is not None
            try:
                if scheme == "NONE":
                    clear = getattr(keystore, "clear_value", None)
                    if clear is None:
                        raise EvalError("scheme none needs a key store that can use the KMC as a static key")
                    k = clear(kmc)
                    return StaticKeys(k, k, k, answered_kvn)
                ck = keystore.diversify_card_keys(kmc, scheme, kdd)
                return StaticKeys(ck.enc, ck.mac, ck.dek, answered_kvn)
            except EvalError:
                raise
            except Exception as exc:
                raise EvalError(f"card keys from {kmc!r}: {type(exc).__name__}: {exc}") from None

        placeholder = StaticKeys(bytes(16), bytes(16), bytes(16), kvn)
        session = HostSession(lambda apdu: b"", placeholder)

        def hooked(apdu: bytes) -> bytes:
            runner.apdus += 1
            resp = transmit(apdu)
            if len(apdu) > 1 and apdu[1] == 0x50 and resp[-2:] == b"\x90\x00" and len(resp) >= 13:
                # the KDD of INITIALIZE UPDATE's answer chooses the card's keys
                session.keys = card_keys(resp[:10], resp[10])
            return resp

        session.transmit = hooked
        try:
            session.open(level, host_challenge, kvn)
        except ScpError as exc:
            if exc.sw is not None and sw_matches(exc.sw, step.expect) and exc.sw != 0x9000:
                return desc + f": refused {exc.sw:04X} (expected)", exc.sw
            raise StepFailed(step.index, step.name, exc.sw, step.expect, str(exc)) from None
        if not sw_matches(0x9000, step.expect):
            # the channel opened (9000) but the script expected it to be refused
            raise StepFailed(step.index, step.name, 0x9000, step.expect, "the secure channel opened")
        session.transmit = transmit
        self.env.session = session
        self.channel_open = True
        self.kdd = session.kdd
        if self.on_session is not None:
            self.on_session(session)
        return desc, 0x9000

    def op_install(self, step: Step) -> tuple[str, int | None]:
        self.need_channel(step)
        kind = self.str_arg(step, "for")
        p1 = INSTALL_KINDS[kind]
        aid = self.bytes_arg(step, "aid")
        if kind == "personalization":
            data = b"\x00\x00" + lv(aid) + b"\x00\x00\x00"
            self.block_counter = 0
        elif kind == "make_selectable":
            priv = self.bytes_arg(step, "privileges", b"")
            data = b"\x00\x00" + lv(aid) + lv(priv) + b"\x00\x00"
        else:
            lf = self.bytes_arg(step, "load_file")
            module = self.bytes_arg(step, "module")
            priv = self.bytes_arg(step, "privileges", b"\x00")
            params = install_params(self.bytes_arg(step, "params", b""))
            data = lv(lf) + lv(module) + lv(aid) + lv(priv) + lv(params) + b"\x00"
        cmd = Command(bytes((0x80, 0xE6, p1, 0x00)), Data.of(data), b"\x00", f"INSTALL [for {kind.replace('_', ' ')}]")
        _, sw = self.exchange(step, cmd)
        return f"INSTALL [for {kind.replace('_', ' ')}] {aid.hex().upper()}", sw

    def op_store_data(self, step: Step) -> tuple[str, int | None]:
        self.need_channel(step)
        last = bool(step.args.get("last", True))
        if "dgis" in step.args:
            dgis = self.dgi_values(step)
            blocks = plan_store_blocks(dgis)
            if not blocks:
                raise EvalError("no DGIs to store")
            sw: int | None = None
            for n, block in enumerate(blocks):
                is_last = last and n == len(blocks) - 1
                body = Data.of(*(dgi_data(d, v) for d, v in block.items))
                p1 = 0x08 | (0x80 if is_last else 0)
                names = " ".join(f"{d:04X}" for d, _ in block.items)
                if block.encrypted:
                    p1 |= 0x60
                    body = self.dek_block(body, names)
                note = f"STORE DATA DGI {names}" + (" (encrypted under the DEK)" if block.encrypted else "")
                if is_last:
                    note += " (last block)"
                sw = self.store(step, p1, body, note)
            secret = sum(1 for b in blocks if b.encrypted)
            return (f"STORE DATA {sum(len(b.items) for b in blocks)} DGIs in {len(blocks)} blocks "
                    f"({secret} encrypted)"), sw
        fmt = step.args.get("format", "dgi")
        encrypt = bool(step.args.get("encrypt", False))
        data = self.data_arg(step, "data")
        p1 = {"none": 0x00, "dgi": 0x08, "ber": 0x10}[fmt] | (0x80 if last else 0)
        if encrypt:
            p1 |= 0x60
            data = self.dek_block(data, "data")
        if len(data) > 0xFF:
            raise EvalError(f"store_data.data: {len(data)} bytes do not fit in one STORE DATA")
        sw = self.store(step, p1, data, "STORE DATA" + (" (encrypted)" if encrypt else ""))
        return f"STORE DATA {len(data)} bytes" + (" (last)" if last else ""), sw

    def dgi_values(self, step: Step) -> list[tuple[int, Data, bool]]:
        raw = step.args["dgis"]
        out: list[tuple[int, Data, bool]] = []
        if isinstance(raw, tuple):  # literal list of {dgi, value}
            for dgi, template in raw:
                value = eval_value(template, self.env, f"store_data.dgis {dgi:04X}")
                data = as_data(value, f"store_data.dgis {dgi:04X}")
                out.append((dgi, data, data.secret))
            return out
        value = eval_value(raw, self.env, "store_data.dgis")
        if not isinstance(value, DgiList):
            raise EvalError("store_data.dgis: expected ${app.dgis} or a list of {dgi, value}")
        for dgi, v in value.items:
            if isinstance(v, Sealed):
                out.append((dgi, Data.of(self.env.unseal(v, f"sealed:{dgi:04X}")), True))
            else:
                out.append((dgi, Data.of(v), False))
        return out

    def dek_block(self, body: Data, names: str) -> Data:
        """Encrypt a STORE DATA data field under the session's static DEK
        (ISO 9797-1 method 2 padding over the whole field, docs/dgi-map.md)."""
        length = (len(body) // 16 + 1) * 16
        dek = self.env.dek()
        if dek is None or not body.exact:
            return Data.of(Secret(f"sealed:{names.replace(' ', ',')}", length, None, encrypted=True))
        clear = body.materialize()
        return Data.of(Secret(f"sealed:{names.replace(' ', ',')}", length, dek_encrypt(dek, pad80(clear)), True))

    def store(self, step: Step, p1: int, body: Data, note: str) -> int | None:
        cmd = Command(bytes((0x80, 0xE2, p1, self.block_counter & 0xFF)), body, b"\x00", note)
        _, sw = self.exchange(step, cmd)
        self.block_counter = 0 if p1 & 0x80 else self.block_counter + 1
        return sw

    def op_create_file(self, step: Step) -> tuple[str, int | None]:
        if "fcp" in step.args:
            fcp = self.bytes_arg(step, "fcp")
            desc = "CREATE FILE (FCP given)"
        else:
            fcp, desc = self.build_fcp(step)
        _, sw = self.exchange(step, Command(b"\x00\xe0\x00\x00", Data.of(fcp), b"", desc))
        return desc, sw

    def build_fcp(self, step: Step) -> tuple[bytes, str]:
        kind = self.str_arg(step, "type")
        fdb = FILE_TYPES[kind]
        fid = self.bytes_arg(step, "fid")
        if len(fid) != 2:
            raise EvalError("create_file.fid: a file identifier is 2 bytes")
        items: list[tuple[int, bytes]] = []
        if kind == "df":
            items.append((0x82, bytes((fdb, 0x41))))
        elif kind == "transparent":
            size = self.int_arg(step, "size", 0)
            items.append((0x80, size.to_bytes(2, "big")))
            items.append((0x82, bytes((fdb, 0x41))))
        else:
            rec_len = self.int_arg(step, "record_length", 0)
            count = self.int_arg(step, "records", 0)
            if not (1 <= rec_len <= 255 and 1 <= count <= 254):
                raise EvalError("create_file: record_length 1–255 and records 1–254")
            items.append((0x82, bytes((fdb, 0x41)) + rec_len.to_bytes(2, "big") + bytes((count,))))
        items.append((0x83, fid))
        if "name" in step.args:
            items.append((0x84, self.bytes_arg(step, "name")))
        if "sfi" in step.args:
            sfi = self.int_arg(step, "sfi", 0)
            items.append((0x88, bytes((sfi << 3,)) if sfi else b""))
        items.append((0x8A, b"\x05"))
        access = step.args.get("access")
        if access:
            modes = DF_MODES if kind == "df" else EF_MODES
            rules = {modes[m]: CONDITIONS[c] for m, c in access.items()}
            items.append((0x8C, compact_acl(rules)))
        fcp = tlv.encode(0x62, tlv.encode_all(items))
        acl = ", ".join(f"{m}: {c}" for m, c in (access or {}).items())
        return fcp, f"CREATE FILE {kind} {fid.hex().upper()}" + (f" ({acl})" if acl else "")

    def op_update_binary(self, step: Step) -> tuple[str, int | None]:
        data = self.data_arg(step, "data")
        offset = self.int_arg(step, "offset", 0)
        sfi = step.args.get("sfi")
        sw: int | None = None
        chunks = split_chunks(data, UPDATE_BINARY_CHUNK)
        for n, (start, chunk) in enumerate(chunks):
            pos = offset + start
            if sfi is not None and n == 0:
                if pos > 0xFF:
                    raise EvalError("update_binary: with an SFI the offset is at most 255")
                p1p2 = bytes((0x80 | self.int_arg(step, "sfi", 0), pos))
            else:
                if pos > 0x7FFF:
                    raise EvalError("update_binary: offset beyond 32767")
                p1p2 = pos.to_bytes(2, "big")
            _, sw = self.exchange(step, Command(b"\x00\xd6" + p1p2, chunk, b"", "UPDATE BINARY"))
        return f"UPDATE BINARY {len(data)} bytes at {offset}", sw

    def op_update_record(self, step: Step) -> tuple[str, int | None]:
        data = self.data_arg(step, "data")
        number = self.int_arg(step, "record", 1)
        sfi = self.int_arg(step, "sfi", 0)
        p2 = (sfi << 3) | 0x04
        _, sw = self.exchange(step, Command(bytes((0x00, 0xDC, number, p2)), data, b"", "UPDATE RECORD"))
        return f"UPDATE RECORD {number} ({len(data)} bytes)", sw

    def op_append_record(self, step: Step) -> tuple[str, int | None]:
        data = self.data_arg(step, "data")
        sfi = self.int_arg(step, "sfi", 0)
        _, sw = self.exchange(step, Command(bytes((0x00, 0xE2, 0x00, sfi << 3)), data, b"", "APPEND RECORD"))
        return f"APPEND RECORD ({len(data)} bytes)", sw

    def op_put_key(self, step: Step) -> tuple[str, int | None]:
        self.need_channel(step)
        new_kvn = self.int_arg(step, "new_version", 0)
        old_kvn = self.int_arg(step, "replace", 0)
        if not 1 <= new_kvn <= 0x7F:
            raise EvalError("put_key.new_version: 01–7F")
        if "kmc" in step.args:
            kmc = self.str_arg(step, "kmc")
            scheme = self.str_arg(step, "scheme").upper()
            source = f"KMC {kmc} diversified ({scheme})"
            values: list[Data] = []
            if self.transmit is not None:
                session = self.env.session
                assert session is not None and self.env.keystore is not None
                try:
                    ck = self.env.keystore.diversify_card_keys(kmc, scheme, session.kdd)
                except Exception as exc:
                    raise EvalError(f"put_key: {type(exc).__name__}: {exc}") from None
                values = [Data.of(Secret(f"key:{n}", len(k), k))
                          for n, k in zip(("enc", "mac", "dek"), (ck.enc, ck.mac, ck.dek), strict=True)]
            else:  # dry run: the size is the KMC's (diversified keys have the master key's length)
                size = 16
                if self.env.keystore is not None:
                    with contextlib.suppress(Exception):
                        size = self.env.keystore.info(kmc).length
                values = [Data.of(Secret(f"key:{n}", size)) for n in ("enc", "mac", "dek")]
        else:
            source = "given keys"
            keys = self.value(step, "keys")
            values = [as_data(keys[n], f"put_key.keys.{n}") for n in ("enc", "mac", "dek")]
        body: list[Piece | Data] = [bytes((new_kvn,))]
        dek = self.env.dek()
        for name, key in zip(("enc", "mac", "dek"), values, strict=True):
            size = len(key)
            padded = -(-size // 16) * 16 or 16
            if dek is not None and key.exact:
                clear = key.materialize()
                if len(clear) not in (16, 24, 32):
                    raise EvalError(f"put_key.keys.{name}: an AES key is 16, 24 or 32 bytes")
                enc = dek_encrypt(dek, clear + bytes(padded - len(clear)))
                check = aes_kcv(clear)
                body += [b"\x88", bytes((1 + padded, len(clear))), Secret(f"dek_encrypt:key.{name}", padded, enc, True),
                         b"\x03", check]
            else:
                body += [b"\x88", bytes((1 + padded, size)), Secret(f"dek_encrypt:key.{name}", padded, None, True),
                         b"\x03", Secret(f"kcv:{name}", 3, None, True)]
        cmd = Command(bytes((0x80, 0xD8, old_kvn, 0x81)), Data.of(*body), b"\x00", f"PUT KEY version {new_kvn:02X}")
        _, sw = self.exchange(step, cmd)
        return f"PUT KEY version {new_kvn:02X} ({source})", sw

    def op_set_status(self, step: Step) -> tuple[str, int | None]:
        self.need_channel(step)
        if "card" in step.args:
            name = self.str_arg(step, "card").upper()
            state = CARD_STATES[name]
            cmd = Command(bytes((0x80, 0xF0, 0x80, state)), Data(), b"", f"SET STATUS card {name}")
            desc = f"SET STATUS card {name}"
        else:
            aid = self.bytes_arg(step, "app")
            st = self.str_arg(step, "state").upper()
            state = APP_STATES[st] if st in APP_STATES else int(st, 16)
            cmd = Command(bytes((0x80, 0xF0, 0x40, state)), Data.of(aid), b"", f"SET STATUS application {st}")
            desc = f"SET STATUS {aid.hex().upper()} {st}"
        _, sw = self.exchange(step, cmd)
        return desc, sw

    def op_apdu(self, step: Step) -> tuple[str, int | None]:
        raw = self.data_arg(step, "hex")
        plain = bool(step.args.get("plain", False))
        clear = raw.clear()
        if clear is not None:
            if len(clear) < 4:
                raise EvalError("apdu.hex: shorter than a command header")
            cmd = parse_command(clear, plain)
            desc = f"APDU {clear[:4].hex().upper()}"
        else:
            head = raw.pieces[0]
            if not isinstance(head, bytes) or len(head) < 5:
                raise EvalError("apdu.hex: the header and Lc must be literal")
            rest = Data(raw.pieces[1:])
            cmd = Command(head[:4], Data.of(head[5:], rest), b"", "", plain)
            desc = f"APDU {head[:4].hex().upper()} (with secret data)"
        _, sw = self.exchange(step, cmd)
        return desc, sw
