"""pj.agent"""
