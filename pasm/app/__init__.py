"""The command line and model use: pasm summary/predict/export (imports pasm.data, pasm.nn and
pasm.evaluate)."""
