"""groot.eval"""
