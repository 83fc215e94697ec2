"""Measuring a student against its teacher: fidelity, cost and speed."""
