"""cardlab tester: an independent EMV terminal and certifier.

It must be able to disagree with the card and the personalizer, so it imports
nothing from ``emulator``, ``personalizer`` or ``cardspec`` (an import-linter
contract in the test suite enforces it): it parses TLV itself, recovers RSA
certificates with its own arithmetic and checks cryptograms with pyemv.
"""
