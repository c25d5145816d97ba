"""The RLVR objective's registries (slots 2-6) and its composition; slot 1 is `lm.advantages`."""

from policylab.lm.losses.objective import ObjectiveConfig, RLVRObjective
from policylab.lm.losses.shaping import SHAPERS
from policylab.lm.losses.slots import AGGREGATIONS, CLIPS, LOSS_FORMS, RATIOS, SlotContext, k3_kl, needs_config

__all__ = ["AGGREGATIONS", "CLIPS", "LOSS_FORMS", "RATIOS", "SHAPERS", "ObjectiveConfig", "RLVRObjective",
           "SlotContext", "k3_kl", "needs_config"]
