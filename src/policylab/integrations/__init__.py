"""policylab's objectives inside the engines people already run: `integrations.verl` (advantage estimators
and policy losses in verl's registries) and, to come, `integrations.trl`. This package imports `lm` and the
engine, never the reverse; `integrations.objectives` is the engine-free part both share."""
