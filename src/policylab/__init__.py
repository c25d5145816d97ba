"""policylab: recent reinforcement-learning methods on one small shared core."""

__version__ = "0.1.0"
