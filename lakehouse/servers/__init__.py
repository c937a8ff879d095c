"""The servers the project starts for local work and tests, each belonging to its
warehouse: Apache Kafka (``broker``), Apicurio Registry (``apicurio``), Marquez with its
PostgreSQL (``marquez``) and a Spark standalone cluster (``cluster``)."""
