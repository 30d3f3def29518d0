"""Certification reports: the same results as text, JSON (a summary document
and the per-card stream in JSON Lines; schema in docs/certification-report.md),
one self-contained HTML file and JUnit XML — each with the provenance of the
run, each written as the cards come (:class:`ReportWriter`).

=============  ======================================================================
origin         the provenance block: version, command line, time, input SHA-256s, key names with check values
differences    expected vs found decoded: text, named bits, CVM rules
cards          one card in each format (a passing card one row; others every result)
writer         :class:`ReportWriter`, :func:`write_reports`, :func:`check_free`
=============  ======================================================================
"""

from __future__ import annotations

from .origin import provenance
from .writer import DETAILS, FILES, SCHEMA, SCHEMA_VERSION, ReportExists, ReportWriter, check_free, echo_text, write_reports

__all__ = ["DETAILS", "FILES", "SCHEMA", "SCHEMA_VERSION", "ReportExists", "ReportWriter", "check_free",
           "echo_text", "provenance", "write_reports"]
