"""Bronze: each Kafka record stored as it arrived, raw and replayable.

One module per source. A definition is a pure function from the Kafka source's columns
to the bronze columns; the engine (``lakehouse.pipelines``) reads Kafka and writes Delta.
"""
