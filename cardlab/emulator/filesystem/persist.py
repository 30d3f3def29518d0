"""The file tree in the card image, and the tree of a new card.

Each file is saved as its FCP (:mod:`.fcp`, hex) plus its contents, so the
image reuses CREATE FILE's parser: a corrupt image fails like a bad FCP would.
"""

from __future__ import annotations

from typing import Any

from cardlab.cardspec import tlv

from ..apdu import StatusError
from .access import (
    ALWAYS,
    CREATE_DF,
    CREATE_EF,
    DELETE_CHILD,
    NEVER,
    READ,
    SC_ALL,
    SC_PIN,
    SC_SM,
    UPDATE,
    WRITE,
    compact_acl,
)
from .fcp import FDB_CYCLIC, FDB_DF, FDB_LINEAR_FIXED, FDB_LINEAR_VARIABLE, FDB_TRANSPARENT, FileSpec
from .model import DF, EF, MF_FID, Node

#: the demo DF's name: F0 (a proprietary, unregistered RID category, ISO 7816-5) + "CARDLAB.DEMO"
DEMO_DF_NAME = b"\xf0CARDLAB.DEMO"


def dump_node(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"fcp": node.spec.build().hex()}
    if isinstance(node, DF):
        out["children"] = [dump_node(c) for c in node.children]
    elif isinstance(node, EF):
        if node.spec.is_record:
            out["records"] = [r.hex() for r in node.records]
        else:
            out["data"] = node.data.hex()
    return out


def load_node(data: dict[str, Any]) -> Node:
    try:
        spec = FileSpec.parse(bytes.fromhex(data["fcp"]))
    except StatusError as exc:
        raise ValueError("corrupt FCP in the card image") from exc
    if spec.is_df:
        df = DF(spec)
        for child in data.get("children", []):
            df.add(load_node(child))
        return df
    return EF(
        spec,
        data=bytearray.fromhex(data.get("data", "")) if not spec.is_record else bytearray(),
        records=[bytes.fromhex(r) for r in data.get("records", [])],
    )


def default_tree() -> DF:
    """A new card's tree: MF with EF.DIR (2F00) and EF.ATR/INFO (2F01), and a
    demo DF 5000 with one EF of each structure."""
    mf = DF(FileSpec(MF_FID, FDB_DF, acl=compact_acl({
        DELETE_CHILD: SC_PIN | SC_SM, CREATE_EF: SC_PIN | SC_SM, CREATE_DF: SC_PIN | SC_SM})))
    public = compact_acl({READ: ALWAYS, UPDATE: SC_SM, WRITE: SC_SM})
    ef_dir = EF(FileSpec(0x2F00, FDB_LINEAR_VARIABLE, rec_len=64, max_records=16, sfi=30, acl=public))
    ef_dir.records.append(
        tlv.encode(0x61, tlv.encode_all([(0x4F, DEMO_DF_NAME), (0x50, b"cardlab demo")]))
    )
    mf.add(ef_dir)
    # pre-issuing data (interindustry tag 46, ISO 7816-4 EF.ATR/INFO)
    info = tlv.encode(0x46, b"cardlab emulator")
    ef_atr = EF(FileSpec(0x2F01, FDB_TRANSPARENT, size=len(info), sfi=1,
                         acl=compact_acl({READ: ALWAYS, UPDATE: NEVER, WRITE: NEVER})),
                data=bytearray(info))
    mf.add(ef_atr)
    demo = DF(FileSpec(0x5000, FDB_DF, name=DEMO_DF_NAME, acl=compact_acl({
        DELETE_CHILD: ALWAYS, CREATE_EF: ALWAYS, CREATE_DF: ALWAYS})))
    mf.add(demo)
    open_acl = compact_acl({READ: ALWAYS, UPDATE: ALWAYS, WRITE: ALWAYS})
    demo.add(EF(FileSpec(0x5001, FDB_TRANSPARENT, size=64, sfi=1, acl=open_acl),
                data=bytearray(b"Hello, cardlab!".ljust(64, b"\x00"))))
    demo.add(EF(FileSpec(0x5002, FDB_TRANSPARENT, size=32, sfi=2,
                         acl=compact_acl({READ: SC_PIN, UPDATE: SC_PIN, WRITE: SC_PIN})),
                data=bytearray(b"secret".ljust(32, b"\x00"))))
    demo.add(EF(FileSpec(0x5003, FDB_LINEAR_FIXED, rec_len=16, max_records=5, sfi=3,
                         acl=compact_acl({READ: ALWAYS, UPDATE: SC_PIN, WRITE: SC_PIN})),
                records=[bytes([n]) * 16 for n in range(1, 4)]))
    demo.add(EF(FileSpec(0x5004, FDB_LINEAR_VARIABLE, rec_len=32, max_records=8, sfi=4, acl=open_acl),
                records=[b"first", b"second record", b"3"]))
    demo.add(EF(FileSpec(0x5005, FDB_CYCLIC, rec_len=8, max_records=4, sfi=5,
                         acl=compact_acl({READ: ALWAYS, UPDATE: NEVER, WRITE: SC_PIN | SC_SM})),
                records=[bytes(7) + b"\x02", bytes(7) + b"\x01"]))
    demo.add(EF(FileSpec(0x5006, FDB_TRANSPARENT, size=16, sfi=6,
                         acl=compact_acl({READ: SC_SM, UPDATE: SC_SM | SC_PIN | SC_ALL})),
                data=bytearray(16)))
    return mf
