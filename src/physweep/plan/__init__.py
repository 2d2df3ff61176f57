"""physweep.plan"""
