"""groot.serve"""
