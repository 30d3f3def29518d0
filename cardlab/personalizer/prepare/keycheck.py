"""Before the first record (issue 13): the key store holds every key the profile and the perso
script name — the profile's card KMC and application keys (IMKs, issuer key pair), and each
``kmc`` a script step names, literally or as ``${profile.…}`` — so a batch that no card could take
is refused at ``perso prepare`` with one line, not found at the first card."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from cardlab.personalizer.keys import KeyStore
from cardlab.personalizer.prepare.errors import PrepareError

#: script arguments that name a key of the key store (GP secure channel, PUT KEY)
_KEY_ARGS = ("kmc",)


def _profile_value(doc: Mapping[str, Any], parts: tuple[str, ...]) -> str | None:
    node: Any = doc
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, str) else None


def _script_keys(script_path: Path, doc: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(key name, where) for each key a script step names and a batch can know before a card:
    literal names and ``${profile.…}`` references (a name taken from a record is checked per card)."""
    from cardlab.personalizer.script.expressions import Path_, Template
    from cardlab.personalizer.script.loader import load_script
    from cardlab.personalizer.script.model import Step

    def walk(steps: tuple[Step, ...]) -> Iterator[Step]:
        for step in steps:
            yield step
            yield from walk(step.steps)

    for step in walk(load_script(script_path).steps):
        for arg in _KEY_ARGS:
            value = step.args.get(arg)
            where = f"the script's step {step.index} ({step.name}) {arg}"
            if isinstance(value, str):
                yield value, where
            elif isinstance(value, Template):
                if not any(True for _ in value.exprs()):
                    yield value.source, where
                elif isinstance(value.single, Path_) and value.single.parts[:1] == ("profile",):
                    name = _profile_value(doc, value.single.parts[1:])
                    if name is not None:
                        yield name, f"{where} = ${{{value.single.text()}}}"


def _profile_keys(profile_path: Path, doc: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    kmc = _profile_value(doc, ("card", "kmc"))
    if kmc is not None:
        yield kmc, "the profile's card.kmc"
    if isinstance(doc.get("applications"), list):
        from cardlab.personalizer.profile import load_profile

        for app in load_profile(profile_path).applications:
            for field in ("imk_ac", "imk_smi", "imk_smc", "issuer_rsa"):
                name = getattr(app.keys, field)
                if name:
                    yield name, f"the profile's application {app.name} keys.{field}"


def check_keys(profile_path: Path, script_path: Path | None, keystore: KeyStore) -> None:
    """Raise :class:`PrepareError` naming every key the profile or the script needs that the key
    store lacks (names only, never values)."""
    doc = yaml.safe_load(profile_path.read_text()) or {}
    if not isinstance(doc, Mapping):
        return  # the profile loader says what is wrong with it
    named = list(_profile_keys(profile_path, doc))
    if script_path is not None:
        named += list(_script_keys(script_path, doc))
    missing: dict[str, str] = {}
    for name, where in named:
        if name not in keystore and name not in missing:
            missing[name] = where
    if missing:
        raise PrepareError("the key store lacks " + "; ".join(f"key {n!r} ({w})" for n, w in missing.items())
                           + ": no card of this batch could be personalized")  # fmt: skip
