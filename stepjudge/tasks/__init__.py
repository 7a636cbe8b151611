"""Synthetic tasks with exact step-level truth (``arith``)."""
