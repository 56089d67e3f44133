"""groot.train"""
