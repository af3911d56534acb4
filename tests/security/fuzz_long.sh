#!/bin/sh
# The long fuzz run (issue 12): each Hypothesis target in test_fuzz_parsers.py for
# SECONDS_EACH seconds (default 95: about 11 minutes for all seven), niced for a shared machine.
# Stopped by the timeout, a target prints "no failure"; a failure prints its minimal example.
#   sh tests/security/fuzz_long.sh [SECONDS_EACH]
cd "$(dirname "$0")/../.." || exit 1
each=${1:-95}
status=0
for target in searchset_and_history capability_reader operation_outcome device_policy \
        token_answers profile_json_only site_configuration; do
    echo "== $target (${each}s)"
    KERBSIDE_FUZZ=long nice -n 15 timeout -s INT "$each" .venv/bin/python -m pytest -q \
        -p no:cacheprovider tests/security/test_fuzz_parsers.py -k "$target" \
        --hypothesis-show-statistics 2>&1 | grep -E "fuzz examples|Falsifying|Error|passed|failed|deselected" | head -8
    rc=$?
    [ "$rc" -ne 0 ] && status=1
done
exit $status
