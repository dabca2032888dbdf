//! Local redis-server processes for tests and benchmarks.
