#!/usr/bin/env bash
# Replaced by benchmarks/gpu_check.sh, whose stages (smoke,sweeps) measure what this
# command measured; kept so that the commands RESULTS.md names still run.
exec bash "$(dirname "$0")/gpu_check.sh" --stages smoke,sweeps "$@"
