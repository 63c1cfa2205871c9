"""Locust load-test suites for modelgate: users per protocol, load shapes, reports and an SLO gate.

Nothing here is imported by the gateway itself; Locust, matplotlib and scikit-learn are only
imported by the modules that need them, when they need them.
"""
