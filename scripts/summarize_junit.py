"""Add up JUnit XML files into one closing line: 'tests: N passed, N failed, N skipped'.

A test counts as failed if it failed or errored on any rank of any run.
Files whose name contains ``-rank`` but not ``-rank0`` only add failures.
"""

import sys
import xml.etree.ElementTree as ET


def main(paths) -> int:
    passed = skipped = 0
    failed = set()
    for path in paths:
        primary = "-rank" not in path or "-rank0." in path
        for case in ET.parse(path).getroot().iter("testcase"):
            name = f"{path.split('-rank')[0]}::{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                failed.add(name)
            elif primary and case.find("skipped") is not None:
                skipped += 1
            elif primary:
                passed += 1
    print(f"tests: {passed} passed, {len(failed)} failed, {skipped} skipped")
    for name in sorted(failed):
        print(f"  FAILED {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
