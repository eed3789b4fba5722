#!/bin/sh
# Doxygen input filter (docs/Doxyfile, FILTER_PATTERNS). The comments of the headers and the
# Markdown pages are written for people reading the files — "Mat<S>", "<s>", "#tokens",
# "\p{N}" — not as Doxygen markup. This escapes those few characters on the way into Doxygen so
# the site shows them as written; the files themselves are not changed.
#   headers:  inside /// comments, "<" → "&lt;" (the ///< marker kept) and "#word" → "\#word"
#   Markdown: outside code spans and fences, "\p{" → "\\p{"; inside code spans "\" → "\\";
#             headings that the page links to get an explicit {#github-style-anchor}; links to README.md files and
#             to paths outside docs/ keep their text and show the path (they are not pages)
case "$1" in
  *.md)
    awk '
      # GitHub-style anchor of a heading: lower case, punctuation dropped, spaces to "-".
      function slug(h,   t) {
        t = tolower(h)
        gsub(/[^a-z0-9 _-]/, "", t)
        gsub(/ /, "-", t)
        return t
      }
      # First pass over the file: the anchors its own links use, [x](#anchor).
      FNR == NR {
        rest = $0
        while (match(rest, /\]\(#[^)]*\)/)) {
          used[substr(rest, RSTART + 3, RLENGTH - 4)] = 1
          rest = substr(rest, RSTART + RLENGTH)
        }
        next
      }
      /^[ \t]*```/ { fence = !fence; print; next }
      fence { print; next }
      {
        line = $0
        # A heading such a link points to gets that explicit {#anchor} (labels are global in
        # Doxygen, so only those, not every heading).
        if (line ~ /^#+ / && line !~ /[{]#/) {
          h = line; sub(/^#+ /, "", h)
          if (slug(h) in used) line = line " {#" slug(h) "}"
        }
        # Links to Markdown files outside the site (README.md files, other folders): text only.
        out = ""
        while (match(line, /\[[^]]*\]\([^)]*(README\.md|\.\.\/)[^)]*\)/)) {
          link = substr(line, RSTART, RLENGTH)
          text = link; sub(/\]\(.*$/, "", text); sub(/^\[/, "", text)
          target = link; sub(/^.*\]\(/, "", target); sub(/\)$/, "", target)
          out = out substr(line, 1, RSTART - 1) text " (" target ")"
          line = substr(line, RSTART + RLENGTH)
        }
        line = out line
        n = split(line, part, "`")
        out = ""
        for (k = 1; k <= n; k++) {
          s = part[k]
          if (k % 2 == 1) gsub(/[\\]p[{]/, "\\\\\\\\p{", s)
          else if (s ~ /[\\]x[0-9a-f]/ || s ~ /error:.*[\\]p[{]/) {
            # Doxygen 1.9.4 reads commands inside these code spans of docs/robustness.md (shell
            # escapes such as \xff, a quoted regex error): double their backslashes, not the table "\|"
            gsub(/[\\][|]/, "\001", s); gsub(/[\\]/, "\\\\\\\\", s); gsub(/\001/, "\\|", s)
          }
          out = out (k > 1 ? "`" : "") s
        }
        print out
      }' "$1" "$1"
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
