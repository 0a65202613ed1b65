"""Plumbing every domain shares, and no business rule: the HTTP middleware and the error
contract, bearer checks, JSON logging, timed upstream requests, retries, signed tokens, the
TTL cache and typed store queues. Nothing here imports a domain (tests/test_architecture.py)."""
