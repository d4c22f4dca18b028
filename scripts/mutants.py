"""The runner behind scripts/mutants-web and scripts/mutants-approval: for each mutation
(name, file, text, replacement, test filter[, test target]) it switches one check off in the
source, runs the test that should catch it, reports whether that test failed (it should), and
puts the source back, even when interrupted. Before that it runs every such test once on the
unchanged source: a test that fails anyway proves nothing.
"""
import os, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test(target, name):
    r = subprocess.run(["cargo", "test", "--all-features", *target, "--", name],
                       cwd=root, capture_output=True, text=True, timeout=900)
    return r.stdout + r.stderr


def run(muts):
    only = sys.argv[1:]
    bad = 0
    # A mutation is caught only if its test passes on the unchanged source: check that first.
    seen = set()
    for m in muts:
        target = tuple(m[5]) if len(m) > 5 else ("--test", "it")
        if (only and m[0] not in only) or (target, m[4]) in seen:
            continue
        seen.add((target, m[4]))
        if "test result: ok" not in test(list(target), m[4]):
            print(f"baseline: {m[4]} FAILS without any mutation; fix it first", flush=True)
            sys.exit(1)
    for m in muts:
        name, f, a, b, name_of_test = m[:5]
        target = m[5] if len(m) > 5 else ["--test", "it"]
        if only and name not in only:
            continue
        p = f"{root}/{f}"
        orig = open(p).read()
        if a not in orig:
            print(f"{name}: PATTERN NOT FOUND", flush=True)
            bad += 1
            continue
        open(p, "w").write(orig.replace(a, b, 1))
        try:
            out = test(target, name_of_test)
            if "could not compile" in out:
                res = "DID NOT COMPILE"
                bad += 1
            elif "test result: FAILED" in out:
                res = "test FAILED (good)"
            elif "test result: ok" in out:
                res = "test PASSED (bad: the check is not covered)"
                bad += 1
            else:
                res = "?"
                bad += 1
            print(f"{name}: {res}", flush=True)
        finally:
            open(p, "w").write(orig)
    sys.exit(1 if bad else 0)
