"""Analyses of stored zoos (summaries and plots now; metanetworks, MLI and LMC are later stages)."""
