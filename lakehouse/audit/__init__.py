"""Looking back and repairing: every table as of a version or an instant, history, diff,
restore and vacuum (``timetravel``), rebuilding from inputs (``replay``), the quarantine
and its replay (``quarantine``), and erasure (``forget``)."""
