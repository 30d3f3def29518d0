"""What a report was made from, so that a reader can reproduce it and trust
it: the cardlab version, the command line, the time, the SHA-256 of every
input file (profile, records, key store, batch manifest), the names of the
keys used with their check values — never a key —, the sample drawn and
the options. Reader and ATR are per card (:class:`..certify.results.CardReport`).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..scp03 import kcv
from ..sources import KeyStore


def cardlab_version() -> str:
    """``cardlab.__version__``: the package ``__init__`` imports nothing, so the
    tester may read it without seeing the other parts."""
    import cardlab

    return str(getattr(cardlab, "__version__", "unknown"))


def sha256_file(path: str | Path) -> str | None:
    """The file's SHA-256 in hex, read in blocks; None when it is not a readable file."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _kcv_of(key_type: str, value: bytes) -> str:
    """KCV as GlobalPlatform and EMV tools print it: AES-ECB(key, 01×16)[:3]
    (GP Amendment D §7.2.2), 3DES-ECB(key, 00×8)[:3] for DES keys."""
    try:
        return kcv(value, aes=key_type.upper().startswith("AES")).hex().upper()
    except ValueError:
        return ""


def key_checks(keys: KeyStore | None) -> list[dict[str, str]]:
    """Name, type, usage and check value of every key of the store — the check value
    computed from the key the tester loaded (a public key: the SHA-256 of its modulus,
    first 8 bytes); a stored KCV that disagrees is reported beside it."""
    if keys is None:
        return []
    stored: dict[str, dict[str, Any]] = {}
    try:
        doc = json.loads(Path(keys.path).read_text(encoding="utf-8"))
        stored = {str(n): e for n, e in (doc.get("keys") or {}).items() if isinstance(e, dict)}
    except (OSError, ValueError, AttributeError):
        pass
    out = []
    for name in sorted(set(keys.symmetric) | set(keys.rsa_public) | set(stored)):
        e = stored.get(name, {})
        ktype = str(e.get("type", ""))
        row = {"name": name, "type": ktype, "usage": str(e.get("usage", ""))}
        if name in keys.symmetric:
            usage, value = keys.symmetric[name]
            row["usage"] = row["usage"] or usage
            ktype = ktype or ("AES" if len(value) == 32 else "DES3")
            row["kcv"] = _kcv_of(ktype, value)
            if e.get("kcv") and str(e["kcv"]).upper() != row["kcv"]:
                row["stored_kcv"] = str(e["kcv"]).upper()
        elif name in keys.rsa_public:
            usage, n, _e = keys.rsa_public[name]
            row["usage"] = row["usage"] or usage
            row["fingerprint"] = hashlib.sha256(n.to_bytes((n.bit_length() + 7) // 8, "big")).hexdigest()[:16].upper()
        else:
            row["kcv"] = str(e.get("kcv", "")).upper()
            row["note"] = "not loaded"
        out.append(row)
    return out


def provenance(
    *,
    inputs: Mapping[str, str | Path | None],
    keys: KeyStore | None = None,
    argv: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance block every report format carries. ``inputs``: role →
    path (profile, records, keys, manifest; None when not given)."""
    args = list(sys.argv if argv is None else argv)
    if args and args[0].endswith(("__main__.py", "/cardlab")):
        args[0] = "cardlab"
    files = {role: {"path": str(p), "sha256": sha256_file(p)} for role, p in inputs.items() if p is not None}
    return {
        "cardlab": cardlab_version(),
        "command": shlex.join(args),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": files,
        "keys": key_checks(keys),
        "options": dict(options or {}),
    }


def lines(p: Mapping[str, Any]) -> list[str]:
    """The block as ``label: value`` lines (text report, JUnit properties)."""
    out = [f"cardlab: {p.get('cardlab', '')}", f"command: {p.get('command', '')}", f"time: {p.get('time', '')}"]
    for role, f in (p.get("inputs") or {}).items():
        out.append(f"{role}: {f['path']} sha256 {f['sha256'] or '(not a readable file)'}")
    out += [f"key {k['name']}: {key_text(k)}" for k in p.get("keys") or []]
    for k, v in (p.get("options") or {}).items():
        out.append(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return out


def key_text(k: Mapping[str, str]) -> str:
    check = (f"KCV {k['kcv']}" if k.get("kcv") else f"SHA-256 {k['fingerprint']}" if k.get("fingerprint") else "no check value")
    if k.get("stored_kcv"):
        check += f" (the store says {k['stored_kcv']})"
    return f"{k.get('type') or '?'} {k.get('usage') or ''}, {check}".replace(" ,", ",")
