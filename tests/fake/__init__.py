"""The parts of `tests/fake_upstream.py`, the strict local stand-in for z.ai."""
