"""Imitation and inverse RL: the misspecification analysis (and, to come, MAMQL and ILD)."""

from policylab.irl.irl_misspec import BEHAVIOUR_MODELS, MisspecConfig, misspecification_error

__all__ = ["BEHAVIOUR_MODELS", "MisspecConfig", "misspecification_error"]
