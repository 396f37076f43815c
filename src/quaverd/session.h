/*
 * Sessions (daytona-api.md 7.3, session*.c): a session is one long-lived
 * bash inside the sandbox reading commands from a pipe, so the working
 * directory and exported variables persist between commands. Each command
 * is written as one line,
 *
 *     __qvd_b ID; eval 'COMMAND' [</dev/null]; __qvd_e ID $?
 *
 * where the two shell functions print a marker (a per-session random token,
 * the command id, and for the end the exit code, between 0x1e bytes) on
 * stdout and on stderr. A pump thread reads every session's stdout and
 * stderr, cuts them at the markers and appends each piece to the command's
 * log file (STATE/tmp/runtime-*, records of stream + length + bytes), so
 * stdout and stderr stay apart and the interleaving is kept for the
 * combined output. `eval` keeps a syntax error inside the command. An
 * asynchronous command reads the shell's stdin (POST .../input writes
 * there); a synchronous one reads /dev/null. Commands run one after the
 * other, as in one shell.
 */
#ifndef QUAVERD_SESSION_H
#define QUAVERD_SESSION_H

#include <stdbool.h>

struct tb_call;
struct rt_instance;
struct runtime;
struct session_table;
struct session_pump;

/* Limits (doc/quaverd.md "Runtime and processes"). */
#define SESSION_ID_MAX 128
#define SESSION_MAX_PER_SANDBOX 64
#define SESSION_COMMANDS_KEPT 1000

/* The routes under process/session (route is what follows "process/session"). */
void tb_session(struct tb_call *c, struct rt_instance *inst, const char *route);

/* The sessions of one instance. */
struct session_table *session_table_new(struct rt_instance *inst);
/* Ends every session (the instance stopped: their shells are gone). */
void session_table_clear(struct session_table *t);
void session_table_free(struct session_table *t);

/* The thread that reads every session's output; @rt->tmp_dir holds the logs. */
struct session_pump *session_pump_start(struct runtime *rt, int *err);
void session_pump_stop(struct session_pump *p);

#endif
