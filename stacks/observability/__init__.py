"""Running CloudSeam as a service: liveness and readiness probes, and Prometheus metrics.

Everything here reads; nothing changes a stack. Metric totals come from the database and Redis at
scrape time, so every web process gives the same answer.
"""
