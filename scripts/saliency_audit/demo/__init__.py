"""The embedded GalSim demo: the galaxy model and its rendering."""
