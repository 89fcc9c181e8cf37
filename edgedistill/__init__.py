"""edgedistill: distil a teacher LM into a small student, export it for edge runtimes, benchmark it."""

__version__ = "0.1.0"
