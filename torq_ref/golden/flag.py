"""One golden-vector flag: a property a test case exercises (spec/GV.md GV-2.3).

The registry of every flag is :data:`torq_ref.golden.flags.FLAGS`; this module holds only the
record, so that the registries of the codec and of the rotation kinds can both use it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flag:
    name: str
    bug_type: str
    description: str
    clause: str

    def note(self) -> dict:
        """The Wycheproof-style notes entry written into JSON files."""
        return {"bugType": self.bug_type, "description": self.description, "clause": self.clause}
