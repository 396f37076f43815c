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
#include <sys/types.h>
#include <time.h>

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
	/*
	 * File transfers (toolbox download/upload) have no overall deadline:
	 * one that moves under 1 KiB/s for this long fails with ETIMEDOUT.
	 * 0: 30000. Rounded up to whole seconds.
	 */
	long transfer_stall_ms;
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

/* ---- The toolbox: a sandbox's own filesystem (daytona-api.md sections 5 and 6) ---- */

/*
 * One sandbox's toolbox. It caches the base "{toolboxProxyUrl}/{sandbox id}"
 * and sends the same headers as the API. Thread-safe: any number of threads
 * may call through one handle, also while another refreshes it. Paths are
 * paths inside the sandbox, sent percent-encoded as they are; "" is EINVAL.
 */
struct dt_toolbox;

/*
 * @toolbox_proxy_url NULL or "": asked from the API (GET /sandbox/{id}).
 * The sandbox id, not its name: the proxy routes by id.
 */
struct dt_toolbox *dt_toolbox_new(struct dt_client *c, const char *sandbox_id,
				  const char *toolbox_proxy_url, struct dt_error *err);
/* The same from a sandbox DTO (its id and toolbox_proxy_url). */
struct dt_toolbox *dt_toolbox_for_sandbox(struct dt_client *c, const struct dt_sandbox *s,
					  struct dt_error *err);
/*
 * After a start or restore: takes the URL from @s (the same sandbox, fresh
 * from the API), or with @s NULL asks the API. On failure the old base stays.
 */
int dt_toolbox_refresh(struct dt_toolbox *tb, const struct dt_sandbox *s, struct dt_error *err);
void dt_toolbox_free(struct dt_toolbox *tb);
const char *dt_toolbox_sandbox_id(const struct dt_toolbox *tb);

/* At most this many entries of one listing are kept (the rest: truncated). */
#define DT_MAX_LISTING 100000

/* FileInfo. Strings are never NULL. */
struct dt_file_info {
	char *name;            /* the basename as sent: not "", no NUL; other checks are yours */
	char *path;            /* full path (newer daemons), else "" */
	int64_t size;          /* >= 0; never use it to size an allocation */
	bool is_dir;
	mode_t mode;           /* S_IFDIR/S_IFREG/S_IFLNK/... | 07777 bits, from permissions/mode */
	char *owner, *group;   /* as sent: numeric strings on Daytona; "" when absent */
	struct timespec mtime; /* modifiedAt (RFC 3339, ns), else modTime; {0,0} when neither */
};
void dt_file_info_clear(struct dt_file_info *fi);

struct dt_file_list {
	struct dt_file_info *items;
	size_t count;
	size_t dropped;  /* entries refused: no object, no name, "" or a name with NUL */
	bool truncated;  /* more than DT_MAX_LISTING entries were sent */
};
void dt_file_list_clear(struct dt_file_list *l);

/*
 * Each returns 0, or -errno with @err filled by dt_error_from_http (404
 * ENOENT, 409 EEXIST, 400 EINVAL, 403 EACCES, ...). Every toolbox call
 * (these and the transfers below) fails with EHOSTDOWN when the server says
 * the sandbox is not started (quaverd: 409 "Sandbox X is not started").
 */

/* GET /files?path= : the entries of a directory, in the server's order. */
int dt_fs_list(struct dt_toolbox *tb, const char *path, struct dt_file_list *out,
	       struct dt_error *err);
/* GET /files/info?path= */
int dt_fs_info(struct dt_toolbox *tb, const char *path, struct dt_file_info *out,
	       struct dt_error *err);
/* POST /files/folder?path=&mode= (mkdir -p: an existing directory is not an error). */
int dt_fs_mkdir(struct dt_toolbox *tb, const char *path, mode_t mode, struct dt_error *err);
/* The same; *@have_info: the answer said what the directory is (quaverd), in @info (to clear). */
int dt_fs_mkdir_info(struct dt_toolbox *tb, const char *path, mode_t mode,
		     struct dt_file_info *info, bool *have_info, struct dt_error *err);
/* DELETE /files?path=[&recursive=true]; a directory needs @recursive. */
int dt_fs_delete(struct dt_toolbox *tb, const char *path, bool recursive, struct dt_error *err);
/* POST /files/move?source=&destination= ; an existing destination: EEXIST (409). */
int dt_fs_move(struct dt_toolbox *tb, const char *source, const char *destination,
	       struct dt_error *err);
/*
 * The same with `overwrite=true`: quaverd then replaces an existing file
 * destination atomically (a rename); Daytona ignores it and answers 409.
 */
int dt_fs_move_over(struct dt_toolbox *tb, const char *source, const char *destination,
		    struct dt_error *err);
/* POST /files/permissions: @mode < 0, @owner/@group NULL or "": left as they are. */
int dt_fs_set_permissions(struct dt_toolbox *tb, const char *path, int mode, const char *owner,
			  const char *group, struct dt_error *err);

struct dt_fs_match {
	char *file;
	int64_t line;
	char *content;
};
struct dt_fs_match_list {
	struct dt_fs_match *items;
	size_t count;
};
void dt_fs_match_list_clear(struct dt_fs_match_list *l);
/* GET /files/find?path=&pattern= : lines containing @pattern (literal), recursive. */
int dt_fs_find(struct dt_toolbox *tb, const char *path, const char *pattern,
	       struct dt_fs_match_list *out, struct dt_error *err);

struct dt_string_list {
	char **items;
	size_t count;
};
void dt_string_list_clear(struct dt_string_list *l);
/* GET /files/search?path=&pattern= : paths whose basename matches the glob, recursive. */
int dt_fs_search(struct dt_toolbox *tb, const char *path, const char *pattern,
		 struct dt_string_list *out, struct dt_error *err);

struct dt_fs_replace_result {
	char *file;
	bool success;
	char *error; /* NULL when none */
};
struct dt_fs_replace_list {
	struct dt_fs_replace_result *items;
	size_t count;
};
void dt_fs_replace_list_clear(struct dt_fs_replace_list *l);
/* POST /files/replace {"files","pattern","newValue"}: one result per file. */
int dt_fs_replace(struct dt_toolbox *tb, const char *const *files, size_t nfiles,
		  const char *pattern, const char *new_value, struct dt_fs_replace_list *out,
		  struct dt_error *err);

/* GET /user-home-dir, /work-dir ({"dir"}) and /version; *out is malloc'd. */
int dt_toolbox_home_dir(struct dt_toolbox *tb, char **out, struct dt_error *err);
int dt_toolbox_work_dir(struct dt_toolbox *tb, char **out, struct dt_error *err);
int dt_toolbox_version(struct dt_toolbox *tb, char **out, struct dt_error *err);

/*
 * Transfers. Never held in memory and never bound by request_timeout_ms:
 * they fail when they stall (config transfer_stall_ms) and honour the
 * cancellation hook. Bytes go to or come from an fd with pread/pwrite at
 * explicit offsets, so the fd's own offset is neither used nor moved.
 */

/*
 * GET /files/download?path= : the whole file into @fd at offsets 0..size-1
 * (an fd that cannot pwrite, a pipe, gets plain writes). The fd is not
 * truncated. *size (may be NULL) is the number of bytes written. A local
 * write failure is its errno (ENOSPC...).
 */
int dt_fs_download_fd(struct dt_toolbox *tb, const char *path, int fd, int64_t *size,
		      struct dt_error *err);

enum dt_range_status {
	DT_RANGE_PARTIAL, /* 206: the server sent the range */
	DT_RANGE_WHOLE,   /* 200: the server ignored Range and sent the whole file */
	DT_RANGE_EOF,     /* 416: @offset is at or past the end of the file; nothing stored */
};
struct dt_range_result {
	enum dt_range_status status;
	int64_t bytes;     /* bytes stored */
	int64_t file_size; /* from Content-Range (or Content-Length of a 200); -1 unknown */
};
/*
 * Bytes [@offset, @offset + @len) into @buf (Range: bytes=a-b). On a 206
 * (PARTIAL) bytes may be less than @len at the end of the file. On a 200
 * (WHOLE) the slice is cut out of the stream, which is abandoned once the
 * slice is complete: the answer is right, but switch to dt_fs_download_fd
 * for this server. 416 (EOF) returns 0 with bytes 0. @len 0: nothing asked.
 */
int dt_fs_read_range(struct dt_toolbox *tb, const char *path, int64_t offset, size_t len,
		     void *buf, struct dt_range_result *res, struct dt_error *err);
/*
 * The same into @fd, each byte at its own file offset (the fd becomes a
 * sparse mirror of the file, as a cache wants): a 206 writes [offset,
 * offset + bytes); a 200 writes the whole file from offset 0 (WHOLE, bytes =
 * its size), after which the fd holds all of it.
 */
int dt_fs_download_range_fd(struct dt_toolbox *tb, const char *path, int64_t offset, int64_t len,
			    int fd, struct dt_range_result *res, struct dt_error *err);

/*
 * Replaces (or creates, with its parents) the file at @path with the first
 * @size bytes of @fd, read with pread from offset 0 (@size < 0: the fd's
 * size by fstat). POST /files/upload-v2?path= with a raw body; a daemon
 * without it (404/405) gets POST /files/bulk-upload (multipart), and the
 * handle remembers which one works. A file that shrinks while it is sent
 * fails with EIO.
 */
int dt_fs_upload_fd(struct dt_toolbox *tb, const char *path, int fd, int64_t size,
		    struct dt_error *err);
/*
 * The same; @mode >= 0 asks for those permission bits (upload-v2's `mode`,
 * which quaverd honours and Daytona ignores). When the answer carries the
 * FileInfo of the file written (quaverd), it goes to @info and *@have_info
 * is true (then clear @info); otherwise ask GET /files/info.
 */
int dt_fs_upload_fd_info(struct dt_toolbox *tb, const char *path, int fd, int64_t size, int mode,
			 struct dt_file_info *info, bool *have_info, struct dt_error *err);

/*
 * POST /files/bulk-download {"paths"} (the SDK's downloadFile): the answer
 * is multipart and held in memory (at most 64 MiB), so use it for small
 * files. @fn runs once per requested path, in order, with the file's bytes
 * or with @file_err (FILE_NOT_FOUND: ENOENT, a part cut short: EIO, no part
 * for the path: EIO); a nonzero return from @fn stops and is returned.
 */
typedef int (*dt_fs_bulk_fn)(void *arg, size_t index, const char *path, const void *data,
			     size_t len, const struct dt_error *file_err);
int dt_fs_bulk_download(struct dt_toolbox *tb, const char *const *paths, size_t npaths,
			dt_fs_bulk_fn fn, void *arg, struct dt_error *err);

#endif
