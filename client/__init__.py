"""pj.client"""
