"""Judging the maps: localisation statistics, intervention probes and strategies."""
