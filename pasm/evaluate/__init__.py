"""Evaluation: classification metrics, plots, the per-round report and point density, run summaries
(imports pasm.data and pasm.nn)."""
