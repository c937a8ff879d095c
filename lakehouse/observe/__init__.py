"""What the pipelines did, batch by batch, and what it says: the event log
(``_system.events``), the figures read from it (status, SLOs, metrics) and the report."""
