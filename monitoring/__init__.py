"""Monitoring: the Prometheus metrics of the API and the conversions (`/metrics`)."""
