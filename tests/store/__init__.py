"""Tests of the result store (whetstone.store)."""
