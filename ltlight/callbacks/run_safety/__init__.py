"""Callbacks that keep a run trustworthy: a checkpoint on SIGTERM / Ctrl-C that resumes exactly,
a stop on a non-finite loss, and the random generators' states in every checkpoint."""
