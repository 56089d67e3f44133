"""groot.data"""
