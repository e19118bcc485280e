"""Shared infrastructure for bench and analysis (and the model's auto kernel): the machine's facts and
fingerprint, and atomic file writes. Imports nothing of attnbench's."""
