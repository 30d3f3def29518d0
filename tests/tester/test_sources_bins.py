"""The tester's own profile reader takes the optional ``bins`` field (docs/profile.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardlab.tester import sources

PROFILES = Path(__file__).resolve().parents[2] / "vectors" / "profiles"


def test_reads_bins_of_the_sample_profiles() -> None:
    visa = sources.load_profile(PROFILES / "visa-cvn18.yaml")
    mc = sources.load_profile(PROFILES / "mastercard-cvn16.yaml")
    assert visa.bins == ("476173",) and mc.bins == ("541333",)
    assert visa.pan_on_bin("4761739001010101") and not visa.pan_on_bin("5413339001010166")
    assert mc.pan_on_bin("5413339001010166") and not mc.pan_on_bin("4761739001010101")


def test_bins_optional_and_checked(tmp_path: Path) -> None:
    text = (PROFILES / "visa-cvn18.yaml").read_text()
    without = tmp_path / "no-bins.yaml"
    without.write_text(text.replace('bins: ["476173"]', ""))
    p = sources.load_profile(without)
    assert p.bins == () and p.pan_on_bin("5413339001010166")
    bad = tmp_path / "bad-bins.yaml"
    bad.write_text(text.replace('bins: ["476173"]', 'bins: ["4761"]'))
    with pytest.raises(sources.SourceError, match="bins: '4761' is not a BIN"):
        sources.load_profile(bad)
