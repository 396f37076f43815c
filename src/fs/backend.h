/*
 * The backend: the Daytona client quaverfs talks through, and what it knows
 * of the server's health. With the local quaverd, a restarted quaverd may
 * listen on another port: after a transport failure the backend rereads the
 * state dir's url and switches to it, so a live mount recovers by itself.
 */
#ifndef QUAVERFS_BACKEND_H
#define QUAVERFS_BACKEND_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daytona.h"

struct backend_config {
	const char *api_url;
	const char *api_key;
	const char *jwt;
	const char *organization_id;
	const char *target;
	const char *ca_file;   /* a PEM CA bundle instead of the system store; NULL: the system's */
	const char *state_dir; /* the local quaverd's; NULL for a remote backend */
	long wait_timeout_ms;  /* how long the client's state waits may take */
};

struct backend;

/* Returns 0, or -errno with @err filled. */
int backend_new(const struct backend_config *cfg, struct backend **out, struct dt_error *err);
void backend_free(struct backend *b);

/* The client to use now. Valid until backend_free (a replaced one is kept). */
struct dt_client *backend_client(struct backend *b);

/*
 * Called after every call made through @used with its result. Notes whether
 * the server answered; returns true when the call failed in transport and
 * the backend switched to a new url: the caller then retries once.
 */
bool backend_after(struct backend *b, struct dt_client *used, int ret, const struct dt_error *err);

/*
 * dt_sandbox_create in region @target: the target travels in the client's
 * configuration, so this uses a client of its own for the one call.
 */
int backend_create_in_target(struct backend *b, const char *target,
			     const struct dt_create_params *p, struct dt_sandbox *out,
			     struct dt_error *err);

/*
 * Cancellation of the calling thread's calls and waits (a FUSE interrupt):
 * the client's hook, and a check for waits of our own.
 */
void backend_set_cancel(bool (*fn)(void *arg), void *arg);
bool backend_cancelled(void);

/*
 * A deadline (monotonic ms, 0: none) for every call and wait of the calling
 * thread, on top of each request's own: past it they end as a cancellation
 * does (EINTR), which the caller turns into ETIMEDOUT when
 * backend_past_deadline() and not backend_interrupted(). A state change
 * uses it so that op_timeout bounds the whole change, requests included.
 */
void backend_set_deadline(int64_t at_ms);
bool backend_past_deadline(void);
/* Only the FUSE interrupt (Ctrl-C), not the deadline. */
bool backend_interrupted(void);

bool backend_reachable(struct backend *b);
bool backend_is_local(const struct backend *b);
/* The API URL now in use (without credentials). */
void backend_url(struct backend *b, char *out, size_t size);

/* true when @err is a failure to reach the server rather than an answer. */
static inline bool dt_error_is_transport(const struct dt_error *err)
{
	return err->transport;
}

/*
 * Runs @expr (which uses the client @c) and retries it once when the local
 * quaverd moved. A GNU statement expression; evaluates to @expr's result.
 */
#define BK_CALL(bk, errp, c, expr)                                                                 \
	({                                                                                         \
		int bk_ret_;                                                                       \
		int bk_try_ = 0;                                                                   \
		for (;;) {                                                                         \
			struct dt_client *c = backend_client(bk);                                  \
			bk_ret_ = (expr);                                                          \
			if (backend_after((bk), c, bk_ret_, (errp)) && ++bk_try_ < 2)              \
				continue;                                                          \
			break;                                                                     \
		}                                                                                  \
		bk_ret_;                                                                           \
	})

#endif
