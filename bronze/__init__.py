"""Bronze: each Kafka record stored as it arrived, raw and replayable.

Every source (a contract in ``expectations/``) lands in ``bronze.<source>`` without a
file here (``lakehouse.landing.land``). A module here is needed only for a bronze table
that transforms: a pure function from the Kafka source's columns to the bronze columns,
marked ``@bronze_table(source=...)``; the engine reads Kafka and writes Delta.
"""
