"""The analyses of stored zoos, as pure computation without Ray: metanetworks, MLI, LMC, Re-Basin, statistics,
tables and plots. The stages in ``pipelines/`` run them on zoos."""
