"""The demos.

* ``cardlab demo`` (:mod:`.pipeline`, :func:`run_demo`) — the main job: sample issuer profiles +
  test key store + generated cardholder records → data preparation → card stock →
  personalization on several stations → certification of every card → reports, a summary table
  and one annotated transaction trace with an online approval.
* ``cardlab card demo`` (:mod:`.card_tour`, :func:`run_card_demo`) — a scripted card-management
  session against a fresh card, every GlobalPlatform command by name.

Their command-line options are read in :mod:`cardlab.cli`.
"""

from .card_tour import DemoFailure, run_card_demo
from .pipeline import (
    PROFILES,
    SCRIPT,
    TEST_KEYSTORE,
    DemoError,
    DemoOptions,
    ProfileRun,
    Stage,
    demo_keystore,
    load_profile_kmc,
    load_profile_name,
    run_demo,
)

__all__ = [
    "PROFILES",
    "SCRIPT",
    "TEST_KEYSTORE",
    "DemoError",
    "DemoFailure",
    "DemoOptions",
    "ProfileRun",
    "Stage",
    "demo_keystore",
    "load_profile_kmc",
    "load_profile_name",
    "run_card_demo",
    "run_demo",
]
