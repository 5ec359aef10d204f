"""NejumiLeaderboards: when to compute one (`nejumi_operator.debounce`: debounced, one at a time per
leaderboard, a few at a time in all) and how (`compute`: the request, the child process that
computes it, the status it leads to). The kopf wiring is in `nejumi_operator.handlers`."""
