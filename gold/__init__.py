"""Gold: exact aggregates of silver that analysts and dashboards query.

A gold table is a function in this package marked ``@gold_table(silver=...)`` that
returns an ``Aggregate`` (``lakehouse.aggregates``): keys, mergeable measures and derived
columns, optionally rolled up a second time for measures that do not merge (distinct
counts, medians). The engine keeps each table up to date incrementally, by MERGE, and
``lakehouse verify gold`` checks it against a batch recomputation from silver.
"""
