// Checks firmware/ino2cpp.awk (make -C firmware/host check): as in the Arduino
// IDE, a sketch may call its functions above their definitions, because the
// conversion declares them before the first one. Without the prototypes this
// does not compile.
#include <string.h>

namespace {
int scale = 2;  // { braces in comments and "strings {" do not count
}  // namespace

void setup() {
  Serial.println(twice(21));
  Serial.println(label("x"));
}

void loop() {}

int twice(int value) {
  return value * scale;
}

static const char *label(const char *name) {
  return strlen(name) > 0 ? name : "{";
}
