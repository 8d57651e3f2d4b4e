"""Stage 3, the runs: the run store, the fold loop that fills it, the leaderboard, comparison and imports."""
