"""Experiment drivers and their configs (one config per experiment, every field commented)."""
