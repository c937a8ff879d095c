"""Silver: bronze records parsed against the data contract, validated, deduplicated.

Definitions arrive with the silver issue (contracts, Great Expectations suites, quarantine).
"""
