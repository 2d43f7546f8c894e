# Turns a sketch (.ino) into the C++ file arduino-cli compiles (its "preprocess"
# step): `#include <Arduino.h>` first, then the sketch with `#line` directives so
# that errors name the .ino and its lines, and a prototype of every top-level
# function inserted just before the first top-level function definition (so that
# a function may be called above its definition, as the IDE allows).
#
#   awk -v path=/abs/sketch.ino -f ino2cpp.awk sketch.ino sketch.ino > sketch.ino.cpp
#
# The file is read twice: pass 1 finds the definitions, pass 2 prints. Like
# arduino-cli's ctags step, only functions at file scope get prototypes (those in
# a namespace or class are declared where they are); a definition is recognised
# by its signature and `{` on one line, which is the style firmware/.clang-format
# keeps.

function strip(line,    out, i, c, n, inStr, q) {
  # The line without comments and string/char literals, so braces in them do not count.
  out = ""; inStr = 0; n = length(line)
  for (i = 1; i <= n; i++) {
    c = substr(line, i, 1)
    if (inBlock) {
      if (c == "*" && substr(line, i + 1, 1) == "/") { inBlock = 0; i++ }
      continue
    }
    if (inStr) {
      if (c == "\\") { i++; continue }
      if (c == q) inStr = 0
      continue
    }
    if (c == "/" && substr(line, i + 1, 1) == "/") break
    if (c == "/" && substr(line, i + 1, 1) == "*") { inBlock = 1; i++; continue }
    if (c == "\"" || c == "'") { inStr = 1; q = c; continue }
    out = out c
  }
  return out
}

function isDefinition(code) {
  if (code !~ /^[A-Za-z_]/) return 0
  if (code ~ /^(namespace|class|struct|union|enum|typedef|using|template|static_assert|extern|if|for|while|switch|do|else|return)([^A-Za-z0-9_]|$)/) return 0
  if (code ~ /=/) return 0  # an initialised variable, not a function
  return code ~ /\)[ \t]*(const[ \t]*)?\{/
}

FNR == 1 { pass++; depth = 0; inBlock = 0 }

pass == 1 {
  code = strip($0)
  if (depth == 0 && isDefinition(code)) {
    proto = substr(code, 1, index(code, "{") - 1)
    sub(/[ \t]+$/, "", proto)
    nprotos++
    protoText[nprotos] = proto ";"
    protoLine[nprotos] = FNR
    if (!firstDef) firstDef = FNR
  }
  opens = gsub(/\{/, "{", code)
  closes = gsub(/\}/, "}", code)
  depth += opens - closes
  next
}

pass == 2 {
  if (FNR == 1) {
    print "#include <Arduino.h>"
    printf "#line 1 \"%s\"\n", path
  }
  if (FNR == firstDef) {
    for (i = 1; i <= nprotos; i++) {
      printf "#line %d \"%s\"\n", protoLine[i], path
      print protoText[i]
    }
    printf "#line %d \"%s\"\n", FNR, path
  }
  print
}
