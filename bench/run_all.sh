#!/usr/bin/env bash
# Every throughput benchmark, one after another, on an otherwise idle machine: each prints its
# Markdown table and writes it to bench/results/. Needs the bench extra (timm):
#   pip install -e ".[bench]" && bash bench/run_all.sh
# The accuracy recipes are separate, one command per README row: python bench/recipes.py ...
set -euo pipefail
cd "$(dirname "$0")"
python throughput.py
python scaling.py
python amp.py
python malloc.py
python profile_jax.py
python xla_flags.py
