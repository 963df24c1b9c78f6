"""Parallelism: device meshes and shardings (`sharding.py`), several processes
(`distributed.py`)."""
