"""Data: canonical labels, data set readers, face alignment, and the HDF5 artifacts (lowest layer:
imports no other pasm subpackage)."""
