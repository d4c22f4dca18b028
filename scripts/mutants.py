"""The runner behind scripts/mutants-web and scripts/mutants-approval: for each mutation
(name, file, text, replacement, test filter[, test target]) it switches one check off in the
source, runs the test that should catch it, reports whether that test failed (it should), and
puts the source back, even when interrupted.
"""
import os, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(muts):
    only = sys.argv[1:]
    bad = 0
    for m in muts:
        name, f, a, b, test = m[:5]
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
            r = subprocess.run(["cargo", "test", "--all-features", *target, "--", test],
                               cwd=root, capture_output=True, text=True, timeout=900)
            out = r.stdout + r.stderr
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
