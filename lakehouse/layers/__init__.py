"""The medallion layers, in the order data flows through them, each one batch path.

``bronze``: Kafka records land untouched, exactly once. ``silver``: each batch is routed
(``routing``: contract, suite, dedup) and committed by the one ``commit_change``, with
its line in the ledger (``ledger``). ``gold``: silver rolled up into mergeable
aggregates. ``chain``: the same writers driven by one query per source.
"""
