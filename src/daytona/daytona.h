/*
 * The Daytona client library: one function per endpoint of the Daytona REST
 * API (../shared/daytona-api.md), typed structs for its DTOs, and one place
 * (dt_error_from_http) that turns an HTTP status and body into an errno and
 * a message. It knows nothing of FUSE. Thread-safe: one dt_client serves
 * every thread; connections are shared and kept alive.
 */
#ifndef QUAVER_DAYTONA_H
#define QUAVER_DAYTONA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dt_config {
	const char *api_url;     /* e.g. "https://app.daytona.io/api" (no trailing slash needed) */
	const char *api_key;     /* Bearer API key, or NULL with jwt */
	const char *jwt;         /* DAYTONA_JWT_TOKEN; needs organization_id */
	const char *organization_id;
	const char *target;      /* sent on create; NULL: the server's default */
	const char *ca_file;     /* extra CA bundle; NULL: the system store. Verification is never off. */
	long connect_timeout_ms; /* 0: 5000 */
	long request_timeout_ms; /* overall deadline of one request, 0: 30000 */
	int max_retries;         /* for 429/5xx/connect errors within the deadline; <0: 0, 0: default 2 */
	long wait_timeout_ms;    /* state waits of create, actions, delete; 0: 120000 */
};

/* Every failure: a positive errno that fits, the HTTP status (0 if none) and a sentence. */
struct dt_error {
	int err;
	int http_status;
	char message[512];
	/*
	 * True only when no HTTP answer came: connection refused or reset, DNS,
	 * TLS, or no answer before the deadline. False for answers (any
	 * http_status), malformed answers, state-wait timeouts, EINTR, bad input.
	 */
	bool transport;
};

struct dt_client;

struct dt_client *dt_client_new(const struct dt_config *cfg, struct dt_error *err);
void dt_client_free(struct dt_client *c);
/* The API URL without credentials, for fsname and the status node. */
const char *dt_client_api_url(const struct dt_client *c);

/*
 * Cancellation: a thread sets a hook before calling into the library; any
 * request or wait on that thread checks it about every 100 ms and fails with
 * EINTR once it returns true (a FUSE interrupt, Ctrl-C). NULL clears it.
 */
typedef bool (*dt_cancel_fn)(void *arg);
void dt_set_cancel_hook(dt_cancel_fn fn, void *arg);

/* Maps an HTTP status and a Daytona error body to err. Exposed for tests and for fuzzing. */
void dt_error_from_http(struct dt_error *err, int http_status, const char *body, size_t len,
			const char *what);

struct dt_kv {
	char *key;
	char *value;
};

struct dt_volume_mount {
	char *volume_id;
	char *mount_path;
	char *subpath; /* NULL when none */
};

struct dt_sandbox {
	char *id;
	char *name;
	char *organization_id;
	char *state;         /* "started", "stopped", ... ("unknown" when absent) */
	char *desired_state; /* may be NULL */
	char *error_reason;  /* may be NULL */
	bool recoverable;
	char *snapshot;      /* may be NULL */
	char *user;
	char *target;
	char *toolbox_proxy_url;
	bool is_public;
	double cpu, gpu, memory, disk;
	int auto_stop_interval;
	int auto_archive_interval;
	int auto_delete_interval;
	struct dt_kv *labels;
	size_t nlabels;
	bool has_env;        /* full DTO (GET by id) rather than a list item */
	struct dt_kv *env;
	size_t nenv;
	struct dt_volume_mount *volumes;
	size_t nvolumes;
	char *created_at, *updated_at, *last_activity_at; /* ISO strings, may be NULL */
	char *json;          /* the DTO as received, pretty-printed, secrets redacted */
};

void dt_sandbox_clear(struct dt_sandbox *s);

struct dt_sandbox_list {
	struct dt_sandbox *items;
	size_t count;
};
void dt_sandbox_list_clear(struct dt_sandbox_list *l);

struct dt_create_params {
	const char *name;
	const char *language; /* becomes the label code-toolbox-language */
	const char *snapshot;
	const char *user;
	const struct dt_kv *env;
	size_t nenv;
	const struct dt_kv *labels;
	size_t nlabels;
	const struct dt_volume_mount *volumes;
	size_t nvolumes;
	double cpu, gpu, memory, disk; /* 0: not sent */
	int auto_stop_interval;        /* <0: not sent */
	int auto_archive_interval;     /* <0: not sent */
	int auto_delete_interval;      /* INT32_MIN: not sent */
	int is_public;                 /* <0: not sent */
};
/* Fills the "not sent" defaults. */
void dt_create_params_init(struct dt_create_params *p);

struct dt_list_query {
	const char *name_prefix;  /* NULL: all */
	const struct dt_kv *labels;
	size_t nlabels;
	int page_limit;           /* 0: 100 */
};

enum dt_action { DT_START, DT_STOP, DT_ARCHIVE, DT_RECOVER };
enum dt_interval { DT_AUTOSTOP, DT_AUTOARCHIVE, DT_AUTODELETE };

/* Each returns 0, or -errno with @err filled. Outputs are cleared first. */
int dt_sandbox_create(struct dt_client *c, const struct dt_create_params *p,
		      struct dt_sandbox *out, struct dt_error *err);
int dt_sandbox_get(struct dt_client *c, const char *id_or_name, struct dt_sandbox *out,
		   struct dt_error *err);
/* Walks every page (cursor paging); one request per page. */
int dt_sandbox_list(struct dt_client *c, const struct dt_list_query *q,
		    struct dt_sandbox_list *out, struct dt_error *err);
int dt_sandbox_action(struct dt_client *c, const char *id, enum dt_action action,
		      struct dt_sandbox *out, struct dt_error *err);
int dt_sandbox_delete(struct dt_client *c, const char *id, struct dt_error *err);
int dt_sandbox_set_labels(struct dt_client *c, const char *id, const struct dt_kv *labels,
			  size_t n, struct dt_error *err);
int dt_sandbox_set_interval(struct dt_client *c, const char *id, enum dt_interval which,
			    int minutes, struct dt_sandbox *out, struct dt_error *err);
int dt_sandbox_create_snapshot(struct dt_client *c, const char *id, const char *snapshot_name,
			       struct dt_sandbox *out, struct dt_error *err);
int dt_sandbox_preview_url(struct dt_client *c, const char *id, int port, char **url,
			   char **token, struct dt_error *err);
/*
 * Polls GET /sandbox/{id} (100 ms backing off to 1 s) until the state is one
 * of @targets (NULL-terminated). "error" and "build_failed" fail with EIO and
 * errorReason; 404 counts as "destroyed"; past @timeout_ms: ETIMEDOUT.
 */
int dt_sandbox_wait(struct dt_client *c, const char *id, const char *const *targets,
		    int timeout_ms, struct dt_sandbox *out, struct dt_error *err);

struct dt_volume {
	char *id;
	char *name;
	char *organization_id;
	char *state; /* pending_create, creating, ready, pending_delete, deleting, deleted, error */
	char *error_reason;
	char *created_at, *updated_at, *last_used_at;
	char *json;
};
void dt_volume_clear(struct dt_volume *v);
struct dt_volume_list {
	struct dt_volume *items;
	size_t count;
};
void dt_volume_list_clear(struct dt_volume_list *l);

int dt_volume_list(struct dt_client *c, struct dt_volume_list *out, struct dt_error *err);
int dt_volume_get(struct dt_client *c, const char *id, struct dt_volume *out,
		  struct dt_error *err);
int dt_volume_get_by_name(struct dt_client *c, const char *name, struct dt_volume *out,
			  struct dt_error *err);
int dt_volume_create(struct dt_client *c, const char *name, struct dt_volume *out,
		     struct dt_error *err);
int dt_volume_delete(struct dt_client *c, const char *id, struct dt_error *err);
/* Polls by id until the state is @target; "error" fails with EIO. */
int dt_volume_wait(struct dt_client *c, const char *id, const char *target, int timeout_ms,
		   struct dt_volume *out, struct dt_error *err);

struct dt_snapshot {
	char *id;
	char *name;
	char *state; /* building, pending, pulling, snapshotting, active, inactive, error, ... */
	char *error_reason;
	char *image_name;
	char *source_sandbox_id;
	double cpu, gpu, mem, disk, size;
	char *created_at, *updated_at;
	char *json;
};
void dt_snapshot_clear(struct dt_snapshot *s);
struct dt_snapshot_list {
	struct dt_snapshot *items;
	size_t count;
};
void dt_snapshot_list_clear(struct dt_snapshot_list *l);

/* Walks every page (page/limit paging). */
int dt_snapshot_list(struct dt_client *c, struct dt_snapshot_list *out, struct dt_error *err);
int dt_snapshot_get(struct dt_client *c, const char *id_or_name, struct dt_snapshot *out,
		    struct dt_error *err);
int dt_snapshot_delete(struct dt_client *c, const char *id, struct dt_error *err);
/* Polls until the state is "active"; "error"/"build_failed" fail with EIO. */
int dt_snapshot_wait_active(struct dt_client *c, const char *id_or_name, int timeout_ms,
			    struct dt_snapshot *out, struct dt_error *err);

#endif
