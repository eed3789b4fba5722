#!/bin/sh
# Doxygen input filter (docs/Doxyfile, FILTER_PATTERNS). The comments of the headers and the
# Markdown pages are written for people reading the files — "Mat<S>", "<s>", "#tokens",
# "\p{N}" — not as Doxygen markup. This escapes those few characters on the way into Doxygen so
# the site shows them as written; the files themselves are not changed.
#   headers:  inside /// comments, "<" → "&lt;" (the ///< marker kept) and "#word" → "\#word"
#   Markdown: outside code spans and fences, "\p{" → "\\p{"
case "$1" in
  *.md)
    awk '
      /^[ \t]*```/ { fence = !fence; print; next }
      fence { print; next }
      {
        n = split($0, part, "`")
        out = ""
        for (k = 1; k <= n; k++) {
          s = part[k]
          if (k % 2 == 1) gsub(/[\\]p[{]/, "\\\\\\\\p{", s)
          out = out (k > 1 ? "`" : "") s
        }
        print out
      }' "$1"
    ;;
  *)
    awk '
      {
        i = index($0, "///")
        if (i == 0) { print; next }
        head = substr($0, 1, i + 2)
        rest = substr($0, i + 3)
        if (substr(rest, 1, 1) == "<") { head = head "<"; rest = substr(rest, 2) }
        gsub(/</, "\\&lt;", rest)
        gsub(/#[A-Za-z_]/, "\\\\&", rest)
        print head rest
      }' "$1"
    ;;
esac
