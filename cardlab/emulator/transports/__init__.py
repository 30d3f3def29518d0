"""Ways to reach an emulated card from outside the process: a pyscard reader
plug-in (:mod:`.pyscard_reader`) and a vsmartcard vpcd client for pcscd
(:mod:`.vpcd`). The card itself does no I/O."""
