"""The runner: job → engine → store and statistics, and the contract front ends use (RunControl, snapshots)."""
