#!/usr/bin/env bash
# Replaced by benchmarks/gpu_check.sh, whose stages (sweeps) measure what this
# command measured; kept so that the commands RESULTS.md names still run.
exec bash "$(dirname "$0")/gpu_check.sh" --stages sweeps "$@"
