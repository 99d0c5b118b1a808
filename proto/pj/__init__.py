"""PJ: a pilot-job system. Sub-packages: pj.master, pj.agent, pj.client, pj.common, pj.v1 (wire)."""

__version__ = "0.1.0"
