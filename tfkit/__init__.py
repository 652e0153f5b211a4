"""tfkit."""
