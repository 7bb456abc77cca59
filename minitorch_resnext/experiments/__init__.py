"""Experiments that test the paper's claims on this engine (`cardinality`: tutorial 3)."""
