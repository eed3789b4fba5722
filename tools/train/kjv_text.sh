#!/usr/bin/env bash
# Prints the King James Bible (public domain) from Debian's bible-kjv package: each chapter under its
# title ("Genesis 1"), each verse indented with its number and wrapped at about 78 columns.
set -euo pipefail
command -v bible >/dev/null || { echo "kjv_text.sh: install Debian's bible-kjv (apt-get install bible-kjv)" >&2; exit 1; }
bible "gen1:1-rev22:21"
