"""The Application File Locator (94): 4 bytes per file (EMV 4.4 Book 3
§10.2): SFI in bits 8-4 of byte 1, the first and last record, and how many
records from the first one take part in offline data authentication.

>>> [str(e) for e in parse(bytes.fromhex("0801010010010202"))]
['SFI 1 record 1', 'SFI 2 records 1-2 (records 1-2 signed for offline data authentication)']
"""

from __future__ import annotations

from dataclasses import dataclass


class AflError(ValueError):
    pass


@dataclass(frozen=True)
class AflEntry:
    sfi: int
    first: int
    last: int
    oda: int  # number of records, from the first, in the static data to be authenticated

    def __str__(self) -> str:
        recs = f"record {self.first}" if self.first == self.last else f"records {self.first}-{self.last}"
        text = f"SFI {self.sfi} {recs}"
        if self.oda:
            signed = (f"record {self.first}" if self.oda == 1
                      else f"records {self.first}-{self.first + self.oda - 1}")
            text += f" ({signed} signed for offline data authentication)"
        return text

    def to_json(self) -> dict[str, int]:
        return {"sfi": self.sfi, "first_record": self.first, "last_record": self.last, "oda_records": self.oda}


def parse(afl: bytes) -> list[AflEntry]:
    if len(afl) % 4:
        raise AflError(f"an AFL is a multiple of 4 bytes, got {len(afl)}")
    out = []
    for i in range(0, len(afl), 4):
        b1, first, last, oda = afl[i:i + 4]
        entry = AflEntry(b1 >> 3, first, last, oda)
        # Book 3 §10.2: SFI 1-30, bits 3-1 zero, first ≥ 1, last ≥ first, ODA count ≤ last-first+1
        if b1 & 7 or not 1 <= entry.sfi <= 30 or first == 0 or last < first or oda > last - first + 1:
            raise AflError(f"AFL entry {afl[i:i + 4].hex().upper()} is not valid (Book 3 §10.2)")
        out.append(entry)
    return out


def build(entries: list[AflEntry]) -> bytes:
    return b"".join(bytes((e.sfi << 3, e.first, e.last, e.oda)) for e in entries)


def lines(afl: bytes) -> list[str]:
    return [str(e) for e in parse(afl)]
