"""Ray stages: generate and the analysis stages as work units on a cluster, their outputs, the study command."""
