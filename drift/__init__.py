"""Drift detection: rules over one customer's state, findings, and their lifecycle (pure logic)."""
