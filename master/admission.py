"""What a Submit must pass before the core keeps any of it: unique names, fields that fit the
model, dependencies on jobs that exist. Pure: it reads the registry and changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from .model import JobSpec
from .registry import Registry


class SubmitError(ValueError):
    """A submission the core refuses (names a job and a field); nothing of it was kept."""


def check_batch(registry: Registry, specs: Sequence[JobSpec], names: Sequence[str] | None = None) -> None:
    """Raise SubmitError naming the first job and field the batch cannot have. ``names[i]``: job i's
    name where specs[i] may be another job's spec (None: each spec's own name); a run of jobs sharing
    one spec object has that spec's fields checked once."""
    seen: set[str] = set()
    if names is None:
        names = [s.name for s in specs]
    last: JobSpec | None = None
    for spec, name in zip(specs, names, strict=True):
        if name in registry or name in seen:
            raise SubmitError(f"job {name!r}: field 'name': a job with this name already exists")
        seen.add(name)
        if spec is not last and spec.model == "threads" and spec.request.nodes.max != 1:
            raise SubmitError(
                f"job {name!r}: field 'nodes': model 'threads' runs one process on one node; "
                "ask for 1 node, or use model srun, openmpi or intelmpi for more"
            )
        last = spec
    last = None
    for spec, name in zip(specs, names, strict=True):
        if spec is last:
            continue
        last = spec
        for dep in spec.after:
            if dep.job not in seen and dep.job not in registry:
                raise SubmitError(f"job {name!r}: field 'after': unknown job {dep.job!r}")
