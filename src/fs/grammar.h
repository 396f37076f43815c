/*
 * The write grammar of the control files: words with shell-like quoting, the
 * creation options shared by `defaults`, `create sandbox` and plain mkdir,
 * and the checks on object names. Pure functions, unit-tested.
 */
#ifndef QUAVERFS_GRAMMAR_H
#define QUAVERFS_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "daytona.h"

/*
 * Splits @len bytes into words. Whitespace separates; '...' keeps everything
 * literally; "..." keeps everything but \" and \\; a backslash outside quotes
 * escapes the next character. Returns 0 with a NULL-terminated array (free
 * with words_free), or -EINVAL with a reason in @msg.
 */
int words_split(const char *text, size_t len, char ***words, size_t *nwords, char *msg,
		size_t msgsize);
void words_free(char **words);

/* Appends @s as one word, quoted only when it needs to be. */
int word_append_quoted(struct buf *out, const char *s);

/* Sandbox, volume and snapshot names: 1-63 of [A-Za-z0-9._-], starting with a letter or digit. */
bool valid_object_name(const char *name);

struct opt_volume {
	char *volume; /* name or id */
	char *mount_path;
	char *subpath; /* NULL when none */
};

/* The options of a sandbox creation; "unset" fields are not sent. */
struct create_opts {
	char *language, *snapshot, *user, *target;
	double cpu, memory, disk, gpu;	      /* 0: unset */
	int autostop, autoarchive, autodelete; /* see the *_set flags */
	bool autostop_set, autoarchive_set, autodelete_set;
	int is_public; /* -1 unset, 0, 1 */
	struct dt_kv *env;
	size_t nenv;
	struct dt_kv *labels;
	size_t nlabels;
	struct opt_volume *volumes;
	size_t nvolumes;
};

void copts_init(struct create_opts *o);
void copts_clear(struct create_opts *o);
int copts_copy(struct create_opts *dst, const struct create_opts *src);

/*
 * Applies one `key=value` word. With @allow_clear, `key=` unsets the key
 * (for env, label and volume: all of them). env=K=V and label=K=V replace
 * the value of K; volume= adds a mount (one per mount path).
 * 0, or -EINVAL with a reason in @msg.
 */
int copts_apply(struct create_opts *o, const char *word, bool allow_clear, char *msg,
		size_t msgsize);

/* Checks combinations: resources together with a snapshot are refused. 0 or -EINVAL. */
int copts_check(const struct create_opts *o, char *msg, size_t msgsize);

/* One `key=value` line per set option, in the order of fs-layout.md. */
int copts_render(const struct create_opts *o, struct buf *out);

/*
 * Fills @p from @o for dt_sandbox_create. The pointers in @p point into @o
 * and @vols (an array of @o->nvolumes the caller provides).
 */
void copts_to_params(const struct create_opts *o, const char *name,
		     struct dt_volume_mount *vols, struct dt_create_params *p);

#endif
