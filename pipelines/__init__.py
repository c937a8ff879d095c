"""Thin spark-submit entry points; each calls the same code as the ``lakehouse`` CLI."""
