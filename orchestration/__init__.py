"""Processes that start other processes: the demo, the early-warning season; above every layer."""
