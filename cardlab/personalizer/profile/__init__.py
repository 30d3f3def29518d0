"""Issuer profile: what every card of a product holds, independent of the cardholder.

``load_profile(path)`` reads and validates a profile (format in
``docs/profile.md``) and returns a frozen :class:`Profile`, or raises
:class:`ProfileError` listing every problem with its path in the document.

Modules, each importing only those above it:

==============  ===============================================================
``tables``      the data element table (Book 3 Annex A) and the code tables
``checker``     reading YAML with field-path problems; :class:`ProfileError`
``derive``      pure derivations: DOL bytes, AIP, AFL, record DGIs
``keyrefs``     the ``keys`` section: key names and issuer certificates
``model``       the frozen dataclasses (:class:`Profile`, :class:`Application`, …)
``sections``    one reader per section of an application (DOLs, AFL, CVM list, …)
``contactless`` the ``contactless`` section (EMV Contactless kernels 3 and 2)
``validate``    consistency rules across the sections of an application
``parse``       the whole document: :func:`parse_profile`, :func:`load_profile`
==============  ===============================================================
"""

from __future__ import annotations

from .checker import ProfileError
from .derive import encode_dol
from .keyrefs import ISSUER_CERTIFICATE_FORMAT, IssuerCertificateRef, KeyRefs
from .model import (
    Application,
    Contactless,
    ConversionRate,
    CvmList,
    CvmRule,
    DolEntry,
    GpDetails,
    Iacs,
    IccKey,
    LogSettings,
    Profile,
    RecordLayout,
    RiskManagement,
)
from .parse import load_card_details, load_profile, parse_profile
from .tables import (
    CVM_CONDITIONS,
    CVM_METHODS,
    CVN_CODES,
    CVNS,
    DIVERSIFICATIONS,
    LIFE_CYCLES,
    ODA_METHODS,
    TAGS,
    TagInfo,
)

__all__ = [
    "CVM_CONDITIONS",
    "CVM_METHODS",
    "CVNS",
    "CVN_CODES",
    "DIVERSIFICATIONS",
    "ISSUER_CERTIFICATE_FORMAT",
    "LIFE_CYCLES",
    "ODA_METHODS",
    "TAGS",
    "Application",
    "Contactless",
    "ConversionRate",
    "CvmList",
    "CvmRule",
    "DolEntry",
    "GpDetails",
    "Iacs",
    "IccKey",
    "IssuerCertificateRef",
    "KeyRefs",
    "LogSettings",
    "Profile",
    "ProfileError",
    "RecordLayout",
    "RiskManagement",
    "TagInfo",
    "encode_dol",
    "load_card_details",
    "load_profile",
    "parse_profile",
]
