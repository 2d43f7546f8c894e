// What the daemon says to a board that asked for acknowledgements
// (docs/protocol.md, "Acknowledgements" and "Errors"):
//
//   OK HELLO <device>        the greeting was accepted
//   ACK <seq>                the reading with that seq is in the CSV
//   ERR <seq> <reason>       that reading could not be written: keep it, resend later
//   ERR - <reason>           a line without a usable seq was rejected
//   ERR <reason> ...         a connection-level error (too-many-connections,
//                            idle-timeout, shutting-down); the daemon closes
//
// Pure parsing, no I/O, so the host unit tests drive it directly.
#ifndef SENSORLOG_REPLY_H
#define SENSORLOG_REPLY_H

#include <stdint.h>

namespace sensorlog {

enum ReplyKind {
  kReplyUnknown,
  kReplyOkHello,
  kReplyAck,
  kReplyErrSeq,         // ERR <seq> <reason>: seq is set
  kReplyErrConnection,  // any other ERR line
};

// Parses one line (without its newline). seq is set for kReplyAck and kReplyErrSeq.
ReplyKind parseReply(const char *line, uint32_t *seq);

}  // namespace sensorlog

#endif
