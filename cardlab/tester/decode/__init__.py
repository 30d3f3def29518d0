"""Decoders for the EMV objects people paste from logs: BER-TLV blobs, bit-
mapped objects (:mod:`.bits`: TVR, TSI, AIP, AUC, IAC/TAC, CID, terminal
capabilities, CTQ, TTQ), the CVR inside the IAD per cryptogram version
(:mod:`.iad`), DOLs (:mod:`.dol`), the AFL (:mod:`.afl`), CVM lists and
results (:mod:`.cvm`), status words (:mod:`.sw`) and APDUs and APDU logs
(:mod:`.apdu`). The teaching trace and ``cardlab test decode`` both use
them, so a byte reads the same in both places.
"""
