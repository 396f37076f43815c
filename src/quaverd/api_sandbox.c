/*
 * /api/sandbox: create and list, and every route under /api/sandbox/{s}
 * ({s} is an id or a name). Input is checked here for shape and syntax; the
 * store decides what depends on other objects and on state.
 */
#define QUAVERD_API_INTERNAL
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_VOLUMES 16
#define MAX_PATH_FIELD 1024
#define MAX_FILTER_VALUES 64

static const char *const create_fields[] = {
	"name", "snapshot", "user", "env", "labels", "public", "networkBlockAll",
	"networkAllowList", "domainAllowList", "target", "cpu", "gpu", "gpuType", "memory",
	"disk", "autoStopInterval", "autoPauseInterval", "autoArchiveInterval",
	"autoDeleteInterval", "ttlMinutes", "volumes", "buildInfo", "linkedSandbox", "secrets",
	"kvm", "spot", "outboundProxyUrl", "otelEndpointOverride", NULL,
};

/* Fields quaverd keeps only to echo them back (no behaviour behind them yet). */
static const char *const echoed_fields[] = {
	"networkBlockAll", "networkAllowList", "domainAllowList", "autoPauseInterval",
	"ttlMinutes", "kvm", "spot", "outboundProxyUrl", "otelEndpointOverride", "gpuType",
	NULL,
};

static bool valid_user(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > STORE_USER_MAX || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
		      *p == '-'))
			return false;
	return true;
}

static bool valid_target(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > STORE_TARGET_MAX)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

static bool has_control(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

/* Daytona's mount path rules (volume-mount-path-validation), in its words. */
static void check_mount_path(const char *v, struct api_errs *e)
{
	static const char *const system_dirs[] = {"/proc", "/sys",  "/dev", "/boot",  "/etc",
						  "/bin",  "/sbin", "/lib", "/lib64", NULL};
	size_t n = strlen(v);

	if (n > MAX_PATH_FIELD || has_control(v)) {
		errs_add(e,
			 "Invalid mount path (must be at most %d characters without control "
			 "characters)",
			 MAX_PATH_FIELD);
		return;
	}
	if (v[0] != '/') {
		errs_add(e, "Invalid mount path %s (must be absolute)", v);
		return;
	}
	if (!strcmp(v, "/") || !strcmp(v, "//")) {
		errs_add(e, "Invalid mount path %s (cannot mount to the root directory)", v);
		return;
	}
	if (strstr(v, "/../") || strstr(v, "/./") || (n >= 3 && !strcmp(v + n - 3, "/..")) ||
	    (n >= 2 && !strcmp(v + n - 2, "/."))) {
		errs_add(e, "Invalid mount path %s (cannot contain relative path components)", v);
		return;
	}
	if (strstr(v + 1, "//")) {
		errs_add(e, "Invalid mount path %s (cannot contain consecutive slashes)", v);
		return;
	}
	for (size_t i = 0; system_dirs[i]; i++) {
		size_t l = strlen(system_dirs[i]);
		if (!strncmp(v, system_dirs[i], l) && (v[l] == '\0' || v[l] == '/')) {
			errs_add(e, "Invalid mount path %s (cannot mount to system directory)", v);
			return;
		}
	}
}

/* A subpath is a directory inside the volume: relative, no "." or ".." anywhere. */
static void check_subpath(const char *v, struct api_errs *e)
{
	if (!v[0])
		return;
	if (strlen(v) > MAX_PATH_FIELD || has_control(v)) {
		errs_add(e,
			 "Invalid subpath (must be at most %d characters without control "
			 "characters)",
			 MAX_PATH_FIELD);
		return;
	}
	if (v[0] == '/') {
		errs_add(e, "Invalid subpath \"%s\" (S3 key prefixes cannot start with /)", v);
		return;
	}
	if (strstr(v, "..")) {
		errs_add(e, "Invalid subpath \"%s\" (cannot contain .. for security)", v);
		return;
	}
	if (strstr(v, "//")) {
		errs_add(e, "Invalid subpath \"%s\" (cannot contain consecutive slashes)", v);
		return;
	}
	for (const char *p = v; *p;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if ((len == 1 && p[0] == '.') || len > 255) {
			errs_add(e, "Invalid subpath \"%s\" (each component must be a name)", v);
			return;
		}
		p += len;
		if (*p == '/')
			p++;
	}
}

/* Fills @mounts from the "volumes" array; returns how many, -1 after errors. */
static int parse_volumes(const cJSON *arr, struct store_volume_mount *mounts, struct api_errs *e)
{
	static const char *const fields[] = {"volumeId", "mountPath", "subpath", NULL};
	const cJSON *item;
	int n = 0, before = e->count;
	char prefix[32];

	if (cJSON_GetArraySize(arr) > MAX_VOLUMES) {
		errs_add(e, "volumes must contain no more than %d elements", MAX_VOLUMES);
		return -1;
	}
	cJSON_ArrayForEach(item, arr)
	{
		struct store_volume_mount *m = &mounts[n];

		snprintf(prefix, sizeof(prefix), "volumes.%d.", n);
		n++;
		if (!cJSON_IsObject(item)) {
			errs_add(e, "nested property volumes must be either object or array");
			continue;
		}
		check_known(item, fields, prefix, e);
		m->volume = opt_string(item, "volumeId", prefix, e);
		m->mount_path = opt_string(item, "mountPath", prefix, e);
		m->subpath = opt_string(item, "subpath", prefix, e);
		if (!m->volume || !m->volume[0])
			errs_add(e, "%svolumeId should not be empty", prefix);
		if (!m->mount_path)
			errs_add(e, "%smountPath must be a string", prefix);
		else
			check_mount_path(m->mount_path, e);
		if (m->subpath)
			check_subpath(m->subpath, e);
	}
	return e->count > before ? -1 : n;
}

static bool nonzero(const cJSON *body, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);

	return cJSON_IsNumber(v) && v->valuedouble != 0;
}

/* Copies the echoed fields the client sent into @extra. */
static cJSON *collect_extra(const cJSON *body)
{
	cJSON *extra = cJSON_CreateObject();

	if (!extra)
		return NULL;
	for (size_t i = 0; echoed_fields[i]; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, echoed_fields[i]);
		if (v && !cJSON_IsNull(v))
			cJSON_AddItemToObject(extra, echoed_fields[i], cJSON_Duplicate(v, true));
	}
	return extra;
}

/* Type checks of the fields quaverd only echoes. */
static void check_echoed(const cJSON *body, struct api_errs *e)
{
	const cJSON *gpu_type = cJSON_GetObjectItemCaseSensitive(body, "gpuType");
	int64_t n;

	opt_bool(body, "networkBlockAll", "", e);
	opt_bool(body, "kvm", "", e);
	opt_bool(body, "spot", "", e);
	opt_string(body, "networkAllowList", "", e);
	opt_string(body, "domainAllowList", "", e);
	opt_string(body, "outboundProxyUrl", "", e);
	opt_string(body, "otelEndpointOverride", "", e);
	if (opt_integer(body, "autoPauseInterval", "", e, &n) && n < 0)
		errs_add(e, "autoPauseInterval must not be less than 0");
	opt_integer(body, "ttlMinutes", "", e, &n);
	if (gpu_type && !cJSON_IsNull(gpu_type) && !cJSON_IsString(gpu_type)) {
		const cJSON *t;
		bool ok = cJSON_IsArray(gpu_type);
		cJSON_ArrayForEach(t, gpu_type) ok = ok && cJSON_IsString(t);
		if (!ok)
			errs_add(e, "gpuType must be an array of strings");
	}
	for (size_t i = 0; echoed_fields[i]; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, echoed_fields[i]);
		if (cJSON_IsString(v) &&
		    (strlen(v->valuestring) > 4096 || has_control(v->valuestring)))
			errs_add(e, "%s must be at most 4096 characters without control characters",
				 echoed_fields[i]);
	}
}

static void check_resource(const cJSON *body, const char *key, double max, double dflt, double *out,
			   bool *given, struct api_errs *e)
{
	*out = dflt;
	if (!opt_number(body, key, "", e, out))
		return;
	*given = true;
	if (*out < 0)
		errs_add(e, "%s must not be less than 0", key);
	else if (*out > max)
		errs_add(e, "%s must not be greater than %g", key, max);
}

static void create_sandbox(struct api_call *c)
{
	struct store_volume_mount mounts[MAX_VOLUMES];
	struct store_sandbox_create req = {0};
	struct store_sandbox_info info;
	struct store_err err = {{0}};
	struct api_errs e = {BUF_INIT, 0};
	const cJSON *volumes;
	cJSON *body, *extra = NULL;
	int rc;

	body = api_body(c);
	if (!body)
		return;
	check_known(body, create_fields, "", &e);
	req.name = opt_string(body, "name", "", &e);
	req.snapshot = opt_string(body, "snapshot", "", &e);
	req.user = opt_string(body, "user", "", &e);
	req.target = opt_string(body, "target", "", &e);
	req.labels = opt_object(body, "labels", "", &e);
	req.env = opt_object(body, "env", "", &e);
	req.is_public = opt_bool(body, "public", "", &e) == 1;
	check_resource(body, "cpu", 64, 1, &req.cpu, &req.has_resources, &e);
	check_resource(body, "gpu", 1, 0, &req.gpu, &req.has_resources, &e);
	check_resource(body, "memory", 256, 1, &req.memory, &req.has_resources, &e);
	check_resource(body, "disk", 1024, 3, &req.disk, &req.has_resources, &e);
	req.auto_stop_min = 15;
	req.auto_archive_min = 10080;
	req.auto_delete_min = -1;
	opt_integer(body, "autoStopInterval", "", &e, &req.auto_stop_min);
	opt_integer(body, "autoArchiveInterval", "", &e, &req.auto_archive_min);
	opt_integer(body, "autoDeleteInterval", "", &e, &req.auto_delete_min);
	volumes = opt_array(body, "volumes", "", &e);
	opt_object(body, "buildInfo", "", &e);
	opt_string(body, "linkedSandbox", "", &e);
	opt_array(body, "secrets", "", &e);
	check_echoed(body, &e);
	if (errs_reply(c, &e))
		goto out;

	/* What Daytona's controller refuses, in its order. */
	if (cJSON_GetObjectItemCaseSensitive(body, "buildInfo") &&
	    !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(body, "buildInfo"))) {
		api_reply_error(c, 400,
				"quaverd cannot build images (buildInfo, or an image in the SDK): "
				"create the sandbox from a snapshot, or with none");
		goto out;
	}
	if (req.snapshot && !req.snapshot[0])
		req.snapshot = NULL; /* Daytona treats a blank snapshot as the default */
	if (req.snapshot && (nonzero(body, "cpu") || nonzero(body, "gpu") ||
			     nonzero(body, "memory") || nonzero(body, "disk"))) {
		api_reply_error(c, 400, "Cannot specify Sandbox resources when using a snapshot");
		goto out;
	}
	if (req.snapshot &&
	    cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(body, "gpuType")) > 0) {
		api_reply_error(c, 400,
				"Cannot specify GPU type when creating sandbox from snapshot. GPU "
				"type is inherited from snapshot.");
		goto out;
	}
	if (opt_string(body, "linkedSandbox", "", &e)) {
		api_reply_error(c, 400, "quaverd does not support linked sandboxes");
		goto out;
	}
	if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(body, "secrets")) > 0) {
		api_reply_error(c, 400, "quaverd does not support secrets: pass the values in env");
		goto out;
	}

	if (req.name)
		check_object_name(req.name, "sandbox", &e);
	if (req.user && !valid_user(req.user))
		errs_add(&e,
			 "user must be a user name: 1 to %d characters from a-z, 0-9, '_' "
			 "and '-', starting with a letter or '_'",
			 STORE_USER_MAX);
	if (req.target && !valid_target(req.target))
		errs_add(&e,
			 "target must be 1 to %d characters from A-Z, a-z, 0-9, '.', '_' "
			 "and '-'",
			 STORE_TARGET_MAX);
	if (req.snapshot && strlen(req.snapshot) > STORE_NAME_MAX)
		errs_add(&e, "Snapshot %.64s... not found", req.snapshot);
	if (req.labels)
		check_string_map(req.labels, "labels", false, &e);
	if (req.env)
		check_string_map(req.env, "env", true, &e);
	if (volumes) {
		int n = parse_volumes(volumes, mounts, &e);
		if (n > 0) {
			req.volumes = mounts;
			req.nvolumes = (size_t)n;
		}
	}
	if (req.auto_stop_min < 0)
		errs_add(&e, "Auto-stop interval must be non-negative");
	if (req.auto_archive_min < 0)
		errs_add(&e, "Auto-archive interval must be non-negative");
	if (errs_reply(c, &e))
		goto out;

	extra = collect_extra(body);
	req.extra = extra;
	rc = store_sandbox_create(c->store, &req, &info, &err);
	if (rc < 0)
		api_store_error(c, rc, &err);
	else
		reply_sandbox(c, &info);
out:
	cJSON_Delete(extra);
	cJSON_Delete(body);
	errs_free(&e);
}

/* ---- list ----------------------------------------------------------------- */

static size_t repeated(struct api_call *c, const char *name, const char **out)
{
	return http_param_all(c->req, name, out, MAX_FILTER_VALUES);
}

static void list_sandboxes(struct api_call *c)
{
	const char *states[MAX_FILTER_VALUES], *snapshots[MAX_FILTER_VALUES];
	const char *targets[MAX_FILTER_VALUES];
	struct store_sandbox_filter f = {0};
	struct store_sandbox_info *items = NULL;
	struct store_err err = {{0}};
	struct api_errs e = {BUF_INIT, 0};
	cJSON *labels = NULL, *o = NULL, *arr;
	char *next = NULL;
	size_t count = 0;
	int64_t limit, v;
	const char *order, *labels_text;
	int rc;

	f.min_cpu = f.max_cpu = f.min_memory = f.max_memory = f.min_disk = f.max_disk = -1;
	query_int(c, "limit", 1, 200, 100, &limit, &e);
	f.id_prefix = http_param(c->req, "id");
	f.name_prefix = http_param(c->req, "name");
	f.is_public = query_bool(c, "isPublic", &e);
	f.is_recoverable = query_bool(c, "isRecoverable", &e);
	if (query_int(c, "minCpu", 1, 1 << 20, -1, &v, &e))
		f.min_cpu = (double)v;
	if (query_int(c, "maxCpu", 1, 1 << 20, -1, &v, &e))
		f.max_cpu = (double)v;
	if (query_int(c, "minMemoryGiB", 1, 1 << 20, -1, &v, &e))
		f.min_memory = (double)v;
	if (query_int(c, "maxMemoryGiB", 1, 1 << 20, -1, &v, &e))
		f.max_memory = (double)v;
	if (query_int(c, "minDiskGiB", 1, 1 << 20, -1, &v, &e))
		f.min_disk = (double)v;
	if (query_int(c, "maxDiskGiB", 1, 1 << 20, -1, &v, &e))
		f.max_disk = (double)v;
	f.nstates = repeated(c, "states", states);
	f.states = states;
	for (size_t i = 0; i < f.nstates; i++) {
		if (!store_is_sandbox_state_name(states[i])) {
			struct buf all = BUF_INIT;
			for (size_t k = 0; store_sandbox_state_names[k]; k++)
				buf_printf(&all, "%s%s", k ? ", " : "",
					   store_sandbox_state_names[k]);
			errs_add(&e, "each value in states must be one of the following values: %s",
				 buf_str(&all));
			buf_free(&all);
			break;
		}
	}
	f.nsnapshots = repeated(c, "snapshots", snapshots);
	f.snapshots = snapshots;
	f.ntargets = repeated(c, "regionIds", targets);
	f.targets = targets;
	order = http_param(c->req, "order");
	if (order && strcmp(order, "asc") && strcmp(order, "desc"))
		errs_add(&e, "order must be one of the following values: asc, desc");
	f.ascending = order && !strcmp(order, "asc");
	labels_text = http_param(c->req, "labels");
	if (labels_text && labels_text[0]) {
		const cJSON *m;
		bool ok;
		labels = cJSON_Parse(labels_text);
		ok = cJSON_IsObject(labels);
		cJSON_ArrayForEach(m, labels) ok = ok && cJSON_IsString(m);
		if (!ok)
			errs_add(&e, "Invalid labels JSON format");
		f.labels = labels;
	}
	if (errs_reply(c, &e))
		goto out;

	rc = store_sandbox_list(c->store, &f, http_param(c->req, "cursor"), (size_t)limit, &items,
				&count, &next, &err);
	if (rc < 0) {
		api_store_error(c, rc, &err);
		goto out;
	}
	o = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(o, "items");
	for (size_t i = 0; arr && i < count; i++) {
		cJSON *item = sandbox_json(c, &items[i], false);
		if (item)
			cJSON_AddItemToArray(arr, item);
	}
	if (next)
		cJSON_AddStringToObject(o, "nextCursor", next);
	else
		cJSON_AddNullToObject(o, "nextCursor");
	http_reply_json(c->resp, 200, o);
out:
	store_sandbox_list_free(items, count);
	free(next);
	cJSON_Delete(labels);
	errs_free(&e);
}

/* ---- routes under /api/sandbox/{s} ---------------------------------------- */

static void reply_result(struct api_call *c, int rc, struct store_sandbox_info *info,
			 const struct store_err *err)
{
	if (rc < 0)
		api_store_error(c, rc, err);
	else
		reply_sandbox(c, info);
}

static void set_labels(struct api_call *c, const char *s)
{
	static const char *const fields[] = {"labels", NULL};
	struct store_sandbox_info info;
	struct store_err err = {{0}};
	struct api_errs e = {BUF_INIT, 0};
	const cJSON *labels;
	cJSON *body = api_body(c);

	if (!body)
		return;
	check_known(body, fields, "", &e);
	labels = opt_object(body, "labels", "", &e);
	if (!labels && e.count == 0)
		errs_add(&e, "labels must be an object");
	if (labels)
		check_string_map(labels, "labels", false, &e);
	if (!errs_reply(c, &e)) {
		int rc = store_sandbox_set_labels(c->store, s, labels, &info, &err);
		if (rc < 0) {
			api_store_error(c, rc, &err);
		} else {
			/* daytona-api.md 2.1: the answer is {"labels": {...}} alone. */
			cJSON *o = cJSON_CreateObject();
			cJSON_AddItemToObject(o, "labels", info.labels);
			info.labels = NULL;
			store_sandbox_info_free(&info);
			http_reply_json(c->resp, 200, o);
		}
	}
	cJSON_Delete(body);
	errs_free(&e);
}

static void snapshot_sandbox(struct api_call *c, const char *s)
{
	static const char *const fields[] = {"name", "includeMemory", NULL};
	struct store_sandbox_info info;
	struct store_err err = {{0}};
	struct api_errs e = {BUF_INIT, 0};
	const char *name;
	cJSON *body = api_body(c);

	if (!body)
		return;
	check_known(body, fields, "", &e);
	name = opt_string(body, "name", "", &e);
	if (opt_bool(body, "includeMemory", "", &e) == 1)
		errs_add(&e, "includeMemory is only supported for Windows sandboxes");
	if (!name && e.count == 0)
		errs_add(&e, "name should not be empty, name must be a string");
	else if (name)
		check_object_name(name, "snapshot", &e);
	if (!errs_reply(c, &e))
		reply_result(c, store_sandbox_snapshot(c->store, s, name, &info, &err), &info,
			     &err);
	cJSON_Delete(body);
	errs_free(&e);
}

static void set_interval(struct api_call *c, const char *s, const char *kind, const char *arg)
{
	struct store_sandbox_info info;
	struct store_err err = {{0}};
	enum store_interval which;
	int64_t minutes;

	if (!strcmp(kind, "autostop"))
		which = STORE_AUTO_STOP;
	else if (!strcmp(kind, "autoarchive"))
		which = STORE_AUTO_ARCHIVE;
	else if (!strcmp(kind, "autodelete"))
		which = STORE_AUTO_DELETE;
	else {
		api_no_route(c);
		return;
	}
	if (parse_int64(arg, -2147483647, 2147483647, &minutes) < 0) {
		api_reply_error(c, 400, "interval must be an integer number of minutes");
		return;
	}
	reply_result(c, store_sandbox_set_interval(c->store, s, which, minutes, &info, &err), &info,
		     &err);
}

static void preview_url(struct api_call *c, const char *s, const char *port_text)
{
	struct store_sandbox_info info;
	struct store_err err = {{0}};
	char url[64];
	int64_t port;
	cJSON *o;
	int rc;

	if (parse_int64(port_text, 1, 65535, &port) < 0) {
		api_reply_error(c, 400, "Invalid port");
		return;
	}
	rc = store_sandbox_get(c->store, s, &info, &err);
	if (rc < 0) {
		api_store_error(c, rc, &err);
		return;
	}
	/* quaverd's sandboxes share the host's loopback: a port is reached directly. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", (int)port);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "sandboxId", info.id);
	cJSON_AddStringToObject(o, "url", url);
	cJSON_AddStringToObject(o, "token", info.preview_token);
	store_sandbox_info_free(&info);
	http_reply_json(c->resp, 200, o);
}

static void toolbox_proxy_url(struct api_call *c, const char *s)
{
	struct store_sandbox_info info;
	struct store_err err = {{0}};
	char url[300];
	cJSON *o;
	int rc = store_sandbox_get(c->store, s, &info, &err);

	if (rc < 0) {
		api_store_error(c, rc, &err);
		return;
	}
	store_sandbox_info_free(&info);
	api_toolbox_url(c, url, sizeof(url));
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "url", url);
	http_reply_json(c->resp, 200, o);
}

static void action(struct api_call *c, const char *s, const char *what)
{
	struct store_sandbox_info info;
	struct store_err err = {{0}};
	struct api_errs e = {BUF_INIT, 0};
	int rc, flag;

	if (!strcmp(what, "start")) {
		rc = store_sandbox_start(c->store, s, &info, &err);
	} else if (!strcmp(what, "stop")) {
		flag = query_bool(c, "force", &e);
		if (errs_reply(c, &e))
			goto out;
		rc = store_sandbox_stop(c->store, s, flag == 1, &info, &err);
	} else if (!strcmp(what, "archive")) {
		rc = store_sandbox_archive(c->store, s, &info, &err);
	} else if (!strcmp(what, "recover")) {
		flag = query_bool(c, "skipStart", &e);
		if (errs_reply(c, &e))
			goto out;
		rc = store_sandbox_recover(c->store, s, flag == 1, &info, &err);
	} else if (!strcmp(what, "snapshot")) {
		snapshot_sandbox(c, s);
		goto out;
	} else if (!strcmp(what, "last-activity")) {
		rc = store_sandbox_get(c->store, s, &info, &err);
		if (rc < 0) {
			api_store_error(c, rc, &err);
		} else {
			store_sandbox_info_free(&info);
			api_reply_empty(c, 201);
		}
		goto out;
	} else {
		api_no_route(c);
		goto out;
	}
	reply_result(c, rc, &info, &err);
out:
	errs_free(&e);
}

void api_sandbox_route(struct api_call *c)
{
	const char *s = c->nsegs > 1 ? c->segs[1] : NULL;
	struct store_sandbox_info info;
	struct store_err err = {{0}};

	if (s)
		store_touch(c->store, s); /* any call naming a sandbox keeps it awake */
	switch (c->nsegs) {
	case 1:
		if (api_method(c, "GET"))
			list_sandboxes(c);
		else if (api_method(c, "POST"))
			create_sandbox(c);
		else
			api_no_route(c);
		return;
	case 2:
		if (api_method(c, "GET"))
			reply_result(c, store_sandbox_get(c->store, s, &info, &err), &info, &err);
		else if (api_method(c, "DELETE"))
			reply_result(c, store_sandbox_delete(c->store, s, &info, &err), &info,
				     &err);
		else
			api_no_route(c);
		return;
	case 3:
		if (api_method(c, "POST"))
			action(c, s, c->segs[2]);
		else if (api_method(c, "PUT") && !strcmp(c->segs[2], "labels"))
			set_labels(c, s);
		else if (api_method(c, "GET") && !strcmp(c->segs[2], "toolbox-proxy-url"))
			toolbox_proxy_url(c, s);
		else
			api_no_route(c);
		return;
	case 4:
		if (api_method(c, "POST"))
			set_interval(c, s, c->segs[2], c->segs[3]);
		else
			api_no_route(c);
		return;
	case 5:
		if (api_method(c, "GET") && !strcmp(c->segs[2], "ports") &&
		    !strcmp(c->segs[4], "preview-url"))
			preview_url(c, s, c->segs[3]);
		else
			api_no_route(c);
		return;
	default:
		api_no_route(c);
	}
}
