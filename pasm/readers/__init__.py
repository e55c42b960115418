"""Readers turn a data set on disk into a list of labelled image records."""
