"""pj.master"""
