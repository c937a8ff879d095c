"""Silver: bronze records parsed against their data contract, validated by their
Great Expectations suite, deduplicated on the contract's key. Rejected records go to
``silver.<table>_quarantine`` with every rule they failed.

Every bronze table gets ``silver.<name>`` through its source's contract and suite
(``expectations/<source>.contract.yaml`` and ``.suite.json``) without a file here. A
module here is needed only for a silver table that does more: a function marked
``@silver_table`` that adds derived columns to the parsed rows.
"""
