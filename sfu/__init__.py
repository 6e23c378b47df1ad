"""Selective forwarding media server for telehealth clinics."""

__version__ = "0.1.0"
