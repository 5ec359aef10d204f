"""The leaderboard: how benchmark scores combine into one number (as data, `overall.json`)."""

from nejumi_eval.leaderboard.formula import OVERALL, Formula, Term

__all__ = ["OVERALL", "Formula", "Term"]
