"""physweep.model"""
