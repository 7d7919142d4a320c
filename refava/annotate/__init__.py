"""Referring-expression annotation: Label Studio exports and the RAVAR release -> annotation records, checks,
status.  ``convert`` is pure (no files, no network); ``io`` reads files; ``checks`` decides per-instance status."""
