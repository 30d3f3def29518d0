"""ISO/IEC 7816-4 file system: MF, DFs, EFs and the interindustry file commands.

=============  ===========================================================
module         holds
=============  ===========================================================
``fcp``        :class:`FileSpec`, the FCP template (tag 62, §7.4.3) as constructs
``access``     security attributes in compact format (8C) and their evaluation
``model``      the DF/EF tree, the per-channel cursor, PIN/PUK try counters
``core``       the file system's state and the helpers every command uses
``select``     SELECT by FID, path and DF name; the FCI/FCP/FMD answer
``data``       READ/UPDATE/WRITE BINARY, READ/UPDATE/APPEND RECORD
``admin``      CREATE FILE, DELETE FILE (ISO 7816-9)
``pin``        VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER
``persist``    the tree in the card image; a new card's tree
``system``     :class:`FileSystem`: dispatch table, SELECT entry points, dump/load
=============  ===========================================================

The names below are the package's public interface (they were one module).
"""

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
    condition_met,
    parse_acl,
)
from .fcp import (
    DEFAULT_DCB,
    EF_FDBS,
    FDB_CYCLIC,
    FDB_DF,
    FDB_LINEAR_FIXED,
    FDB_LINEAR_VARIABLE,
    FDB_TRANSPARENT,
    IGNORED_FCP_TAGS,
    KNOWN_FCP_TAGS,
    LCSI_OPERATIONAL,
    MAX_RECORD_LENGTH,
    MAX_RECORDS,
    MAX_TRANSPARENT_SIZE,
    RECORD_FDBS,
    FileSpec,
)
from .model import (
    DEFAULT_BUDGET,
    DEFAULT_PIN,
    DEFAULT_PUK,
    DF,
    EF,
    FILE_OVERHEAD,
    MF_FID,
    PIN_LENGTH,
    PIN_REF,
    PIN_TRIES,
    PUK_TRIES,
    FsCursor,
    Node,
    Secret,
    valid_pin_format,
)
from .persist import DEMO_DF_NAME
from .system import FileSystem, Handler

__all__ = [
    "ALWAYS", "CREATE_DF", "CREATE_EF", "DEFAULT_BUDGET", "DEFAULT_DCB", "DEFAULT_PIN", "DEFAULT_PUK",
    "DELETE_CHILD", "DEMO_DF_NAME", "DF", "EF", "EF_FDBS", "FDB_CYCLIC", "FDB_DF", "FDB_LINEAR_FIXED",
    "FDB_LINEAR_VARIABLE", "FDB_TRANSPARENT", "FILE_OVERHEAD", "IGNORED_FCP_TAGS", "KNOWN_FCP_TAGS",
    "LCSI_OPERATIONAL", "MAX_RECORDS", "MAX_RECORD_LENGTH", "MAX_TRANSPARENT_SIZE", "MF_FID", "NEVER",
    "PIN_LENGTH", "PIN_REF", "PIN_TRIES", "PUK_TRIES", "READ", "RECORD_FDBS", "SC_ALL", "SC_PIN", "SC_SM",
    "UPDATE", "WRITE", "FileSpec", "FileSystem", "FsCursor", "Handler", "Node", "Secret", "compact_acl",
    "condition_met", "parse_acl", "valid_pin_format",
]
