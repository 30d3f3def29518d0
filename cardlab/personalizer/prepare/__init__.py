"""Data preparation: issuer profile + cardholder records + key store → a batch.

Modules, in the order they build on each other (none imports a later one):

=============  ======================================================================
``errors``     :class:`PrepareError` (the whole batch), :class:`CardProblem` (one record)
``icc_key``    per-card ICC RSA key pairs (:func:`generate_icc_key`, EMV Book 2 §6.1)
``issuer``     issuer certificates (8F, 90, 92, 9F32; Book 2 §5.3): the profile's or the
               key store's verified once per batch, or signed with a test CA key;
               :func:`load_ca_public_keys`
``preparer``   :class:`CardPreparer` — one record → ``CardPersoData`` (master keys,
               tracks, ICC keys and certificates, DGIs); :func:`iter_prepared`
``writer``     :func:`prepare` — the batch directory (``cards.jsonl``,
               ``rejected.jsonl``, manifest), the badge path, :func:`default_script`
``cli``        ``cardlab perso prepare``
=============  ======================================================================

See ``docs/personalizer.md``.
"""

from __future__ import annotations

from cardlab.personalizer.prepare.cli import add_commands
from cardlab.personalizer.prepare.errors import CardProblem, PrepareError
from cardlab.personalizer.prepare.icc_key import IccKeyPair, generate_icc_key
from cardlab.personalizer.prepare.issuer import IssuerCertificates, load_ca_public_keys
from cardlab.personalizer.prepare.preparer import PAN_TAGS, CardPreparer, iter_prepared
from cardlab.personalizer.prepare.writer import SCRIPTS, PrepareSummary, default_script, prepare

__all__ = [
    "PAN_TAGS", "SCRIPTS", "CardPreparer", "CardProblem", "IccKeyPair", "IssuerCertificates", "PrepareError",
    "PrepareSummary", "add_commands", "default_script", "generate_icc_key", "iter_prepared",
    "load_ca_public_keys", "prepare",
]
