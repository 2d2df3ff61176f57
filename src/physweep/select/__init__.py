"""physweep.select"""
