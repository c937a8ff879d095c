"""Silver: bronze records parsed against their data contract, validated by their
Great Expectations suite, deduplicated on the event id. Rejected records go to
``silver.<table>_quarantine`` with every rule they failed.

A silver table is a function in this package marked ``@silver_table``; its contract and
suite are ``expectations/<name>.contract.yaml`` and ``expectations/<name>.suite.json``.
"""
