"""Inference jobs: the queue (claims, leases, retries), scheduling cases onto it, wake-ups."""
