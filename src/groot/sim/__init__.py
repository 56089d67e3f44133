"""groot.sim"""
