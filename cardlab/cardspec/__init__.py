"""Pure encodings and cryptography shared by the emulator and the personalizer
(never by the tester): BER-TLV, DGIs, SCP03, GP key diversification."""
