"""Data contracts and expectations: what a valid record is, and how every record is
classified (valid, or rejected with every rule it failed)."""
