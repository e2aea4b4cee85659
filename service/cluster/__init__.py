"""Cluster mode (docs/cluster.md): Ray shards run the cameras, PostgreSQL keeps what must survive a node,
Redis pub/sub fans scores and alerts out to any number of stateless API nodes. Needs the `cluster` extra."""
