"""Simulators that make the inputs of training sets and tests (star fields, ...)."""
