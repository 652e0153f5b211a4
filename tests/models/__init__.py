"""Tests of tfkit.models."""
