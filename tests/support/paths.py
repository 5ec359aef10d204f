"""Where things are in the checkout, for tests at any depth (no `parents[n]` counted by hand)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The checkout's root."""
FIXTURES = REPO / "tests" / "fixtures"
"""Test doubles and data builders (servers, judges, a plugin benchmark)."""
