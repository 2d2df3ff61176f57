"""physweep.evaluate"""
