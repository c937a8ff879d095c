"""Gold: aggregates of silver that analysts query. Definitions arrive with the gold issue."""
