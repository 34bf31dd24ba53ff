"""Judging the maps: object regions, localisation statistics, intervention probes and strategies."""
