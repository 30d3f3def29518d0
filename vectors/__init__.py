"""cardlab's sample data, installed as the package ``cardlab.vectors``.

This directory is the package: ``pyproject.toml`` maps ``cardlab.vectors`` to
``vectors/`` and ships, as package data, only the files the commands read at
run time — the sample issuer profiles, terminal profiles, perso scripts, the
TEST CA and the TEST key store. ``cardlab demo``, the pytest plugin's default
perso script and the tester's default terminal find them with
``importlib.resources.files("cardlab.vectors")``: ``vectors/`` of a source
checkout (editable install), the installed copy otherwise. No code here.
"""
