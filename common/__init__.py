"""pj.common"""
