/* Small helpers shared by quaverfs and quaverd: files, time, randomness. */
#ifndef QUAVER_UTIL_H
#define QUAVER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Crash-safe replace: write to a temp file in the same directory, fsync it,
 * rename it over @path, fsync the directory. Returns 0 or -errno.
 */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Reads a whole file (at most @max bytes, else -EFBIG). Returns 0 or -errno. */
int read_file(const char *path, struct buf *out, size_t max);
/* mkdir -p. Returns 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);
/* rm -rf without following symlinks and without leaving the tree. 0 or -errno. */
int rm_rf(const char *path);
int fsync_dir(const char *dir);

/* Fills @buf with cryptographic randomness. 0 or -errno. */
int random_bytes(void *buf, size_t len);
/* A random RFC 4122 version 4 UUID, lower case, 36 characters. */
void uuid4(char out[37]);
/* 2*len hex characters of randomness. */
void random_hex(char *out, size_t len);

/* Milliseconds of CLOCK_MONOTONIC, for deadlines. */
int64_t now_mono_ms(void);
/* Milliseconds since the epoch, for timestamps. */
int64_t now_wall_ms(void);
/* "2026-11-29T17:38:03.123Z" for a wall-clock ms value; out holds 32 bytes. */
void iso8601_ms(int64_t wall_ms, char out[32]);
/* Parses the format above (and whole seconds). Returns 0 or -EINVAL. */
int parse_iso8601_ms(const char *s, int64_t *wall_ms);

/*
 * Runs argv[0] with argv (no shell), stdin from /dev/null, stdout and stderr
 * into @output when given (at most 64 KiB kept). Returns the exit status
 * (0..255), 128+signal when killed, or -errno when it could not run.
 */
int run_argv(const char *const argv[], struct buf *output);

/* Copies with truncation; always NUL-terminates. Returns false if truncated. */
bool copy_str(char *dst, size_t size, const char *src);
/* Parses a whole decimal integer in [min, max]. 0 or -EINVAL / -ERANGE. */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

#endif
