"""Running symzoo stages on Ray clusters: cluster configs and job submission."""
