"""Readers: EcoPart and EcoTaxa exports into canonical tables, Copernicus zarr into a Dataset.

Each tabular reader returns a :class:`~pipeline.sources._table.ReadResult`: the accepted
rows, a quarantine (file, line, column, reason, raw line) and per-file counts that
reconcile (read = accepted + quarantined).
"""
