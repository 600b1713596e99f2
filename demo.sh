#!/bin/sh
# `make demo`: the whole system on this machine. Until the pipelines service lands (issue 9)
# there is nothing end to end to show, and this says so instead of pretending.
echo "make demo: not yet: see issue list (issue 9 delivers the pipeline demo)" >&2
exit 1
