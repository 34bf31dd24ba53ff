"""Figures and the report's text."""
