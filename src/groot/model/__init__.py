"""groot.model"""
