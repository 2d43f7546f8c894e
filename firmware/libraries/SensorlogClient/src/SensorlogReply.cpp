#include "SensorlogReply.h"

#include <string.h>

namespace sensorlog {

namespace {

// Parses a decimal uint32 that ends at a space or the end of the line.
bool parseSeq(const char *p, uint32_t *out) {
  if (*p < '0' || *p > '9') return false;
  uint32_t value = 0;
  for (; *p >= '0' && *p <= '9'; p++) {
    const uint32_t digit = (uint32_t)(*p - '0');
    if (value > (0xFFFFFFFFu - digit) / 10) return false;  // does not fit
    value = value * 10 + digit;
  }
  if (*p != '\0' && *p != ' ') return false;
  *out = value;
  return true;
}

}  // namespace

ReplyKind parseReply(const char *line, uint32_t *seq) {
  uint32_t value = 0;
  if (strncmp(line, "OK HELLO", 8) == 0 && (line[8] == '\0' || line[8] == ' ')) {
    return kReplyOkHello;
  }
  if (strncmp(line, "ACK ", 4) == 0) {
    if (!parseSeq(line + 4, &value)) return kReplyUnknown;
    if (seq) *seq = value;
    return kReplyAck;
  }
  if (strncmp(line, "ERR", 3) == 0 && (line[3] == '\0' || line[3] == ' ')) {
    if (line[3] == ' ' && parseSeq(line + 4, &value)) {
      if (seq) *seq = value;
      return kReplyErrSeq;
    }
    return kReplyErrConnection;
  }
  return kReplyUnknown;
}

}  // namespace sensorlog
