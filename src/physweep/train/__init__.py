"""physweep.train"""
