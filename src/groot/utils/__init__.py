"""groot.utils"""
