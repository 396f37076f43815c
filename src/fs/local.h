/*
 * The local backend: finds the quaverd binary, reuses the quaverd that runs
 * on a state dir (its `lock` file is flock'ed while it runs) or starts one
 * detached, and reads its `url` and `token` (doc/quaverd.md).
 */
#ifndef QUAVERFS_LOCAL_H
#define QUAVERFS_LOCAL_H

#include <stdbool.h>
#include <stddef.h>

/* $XDG_DATA_HOME/quaverd, else ~/.local/share/quaverd. NULL when neither is known. */
char *local_default_state_dir(void);

/*
 * The quaverd to start: @explicit_path when given, else next to this
 * executable, else ../quaverd/quaverd from it (the build tree), else the
 * first `quaverd` on $PATH. Returns a malloc'ed path or NULL.
 */
char *local_find_quaverd(const char *explicit_path);

/* True while a quaverd holds the state dir's lock. */
bool local_is_running(const char *state_dir);

/* Reads the state dir's url file (trimmed). 0 or -errno. */
int local_read_url(const char *state_dir, char **url);

/*
 * Makes sure a quaverd serves @state_dir, starting @quaverd_bin detached
 * when none runs, and waits (at most @wait_ms) for its url. Fills @url and
 * @token (malloc'ed) and @started. Returns 0, or -errno with a sentence in @msg.
 */
int local_quaverd_ensure(const char *state_dir, const char *quaverd_bin, int wait_ms, char **url,
			 char **token, bool *started, char *msg, size_t msgsize);

#endif
