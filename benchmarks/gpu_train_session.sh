#!/usr/bin/env bash
# Renamed benchmarks/gpu_train.sh (the paper's schedule, after benchmarks/gpu_check.sh);
# kept so that the command RESULTS.md names still runs.
exec bash "$(dirname "$0")/gpu_train.sh" "$@"
