"""Monitoring of the control plane: Prometheus metrics, model drift, OpenTelemetry traces.

See docs/monitoring.md for the metric names (a contract with the dashboards, alert rules and
autoscalers), the multi-process design, the drift method and the tracing setup.
"""
