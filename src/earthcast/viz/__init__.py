"""Plots and animations (matplotlib)."""
