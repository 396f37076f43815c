/*
 * JSON in and out for the API: request bodies checked the way Daytona's
 * NestJS ValidationPipe checks them (whitelist with forbidNonWhitelisted,
 * class-validator's messages joined with ", "), bounds on labels and env,
 * object names, query parameters, and the DTOs of daytona-api.md 2.3, 3, 4.
 */
#define QUAVERD_API_INTERNAL
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_MAP_ENTRIES 100
#define MAX_LABEL_KEY 256
#define MAX_LABEL_VALUE 1048576
#define MAX_ENV_KEY 256
#define MAX_ENV_VALUE 1048576

/* ---- error collection ----------------------------------------------------- */

void errs_add(struct api_errs *e, const char *fmt, ...)
{
	va_list ap;

	if (e->count++ > 0)
		buf_append_str(&e->text, ", ");
	va_start(ap, fmt);
	buf_vprintf(&e->text, fmt, ap);
	va_end(ap);
}

void errs_free(struct api_errs *e)
{
	buf_free(&e->text);
	e->count = 0;
}

bool errs_reply(struct api_call *c, struct api_errs *e)
{
	if (e->count == 0)
		return false;
	api_reply_error(c, 400, "%s", buf_str(&e->text));
	return true;
}

/* Shows at most 64 characters of a value the client sent, in an error message. */
static const char *clip(const char *s, char out[80])
{
	size_t n = strlen(s);

	if (n <= 64)
		return s;
	snprintf(out, 80, "%.61s...", s);
	return out;
}

/* ---- bodies --------------------------------------------------------------- */

/*
 * cJSON turns "\u0000" into a NUL that silently cuts the string short: a
 * name "a\u0000b" would become "a". Before parsing, each such escape becomes
 * U+E000 (a private-use character), and afterwards any string or key holding
 * one is refused by name, as "name must not contain NUL characters".
 */
#define NUL_MARK "\xee\x80\x80"

static char *mark_nul_escapes(const char *s, size_t len, bool *found)
{
	char *out = malloc(len + 1);
	size_t o = 0;

	*found = false;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\' && i + 1 < len) {
			if (i + 5 < len && s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4)) {
				memcpy(out + o, "\\ue000", 6);
				o += 6;
				i += 5;
				*found = true;
				continue;
			}
			out[o++] = s[i++]; /* an escaped character, "\\" included */
		}
		out[o++] = s[i];
	}
	out[o] = '\0';
	return out;
}

static void find_nul_marks(const cJSON *item, const char *path, struct api_errs *e)
{
	const cJSON *child;
	char sub[160], tmp[80];
	int index = 0;

	if (cJSON_IsString(item) && strstr(item->valuestring, NUL_MARK))
		errs_add(e, "%s must not contain NUL characters", path[0] ? path : "the body");
	cJSON_ArrayForEach(child, item)
	{
		if (cJSON_IsObject(item)) {
			if (strstr(child->string, NUL_MARK)) {
				errs_add(e, "keys of %s must not contain NUL characters",
					 path[0] ? path : "the body");
				continue;
			}
			snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "",
				 clip(child->string, tmp));
		} else {
			snprintf(sub, sizeof(sub), "%s.%d", path, index++);
		}
		find_nul_marks(child, sub, e);
	}
}

cJSON *api_body(struct api_call *c)
{
	const struct http_request *req = c->req;
	struct buf spooled = BUF_INIT;
	const char *text;
	size_t len;
	cJSON *json;

	if (req->body_file) {
		if (read_file(req->body_file, &spooled, 16 * 1024 * 1024) < 0) {
			api_reply_error(c, 400, "The request body could not be read");
			buf_free(&spooled);
			return NULL;
		}
		text = buf_str(&spooled);
		len = spooled.len;
	} else {
		text = buf_str(&req->body);
		len = req->body.len;
	}
	size_t skip = 0;
	while (skip < len && (text[skip] == ' ' || text[skip] == '\n' || text[skip] == '\r' ||
			      text[skip] == '\t'))
		skip++;
	if (skip == len) {
		buf_free(&spooled);
		return cJSON_CreateObject();
	}
	if (memchr(text, '\0', len)) {
		api_reply_error(c, 400, "The request body must not contain NUL bytes");
		buf_free(&spooled);
		return NULL;
	}
	bool marked;
	char *copy = mark_nul_escapes(text, len, &marked);
	const char *end = NULL;
	if (!copy) {
		buf_free(&spooled);
		api_reply_error(c, 500, "Out of memory");
		return NULL;
	}
	json = cJSON_ParseWithOpts(copy, &end, true);
	if (!json) {
		size_t at = end && end >= copy ? (size_t)(end - copy) : 0;
		api_reply_error(c, 400, "Malformed JSON in the request body at position %zu", at);
		free(copy);
		buf_free(&spooled);
		return NULL;
	}
	free(copy);
	if (marked) {
		struct api_errs e = {BUF_INIT, 0};
		find_nul_marks(json, "", &e);
		if (errs_reply(c, &e)) {
			errs_free(&e);
			cJSON_Delete(json);
			buf_free(&spooled);
			return NULL;
		}
		errs_free(&e);
	}
	buf_free(&spooled);
	if (!cJSON_IsObject(json)) {
		cJSON_Delete(json);
		api_reply_error(c, 400, "The request body must be a JSON object");
		return NULL;
	}
	return json;
}

void check_known(const cJSON *obj, const char *const *known, const char *prefix, struct api_errs *e)
{
	const cJSON *m;
	char tmp[80];

	cJSON_ArrayForEach(m, obj)
	{
		bool ok = false;
		for (size_t i = 0; known[i]; i++)
			if (!strcmp(m->string, known[i]))
				ok = true;
		if (!ok)
			errs_add(e, "%sproperty %s should not exist", prefix, clip(m->string, tmp));
	}
}

/* Present and not null: class-validator's IsOptional lets null through as absent. */
static const cJSON *member(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return v && !cJSON_IsNull(v) ? v : NULL;
}

const char *opt_string(const cJSON *obj, const char *key, const char *prefix, struct api_errs *e)
{
	const cJSON *v = member(obj, key);

	if (!v)
		return NULL;
	if (!cJSON_IsString(v)) {
		errs_add(e, "%s%s must be a string", prefix, key);
		return NULL;
	}
	return v->valuestring;
}

int opt_bool(const cJSON *obj, const char *key, const char *prefix, struct api_errs *e)
{
	const cJSON *v = member(obj, key);

	if (!v)
		return -1;
	if (!cJSON_IsBool(v)) {
		errs_add(e, "%s%s must be a boolean value", prefix, key);
		return -1;
	}
	return cJSON_IsTrue(v);
}

bool opt_number(const cJSON *obj, const char *key, const char *prefix, struct api_errs *e,
		double *out)
{
	const cJSON *v = member(obj, key);

	if (!v)
		return false;
	if (!cJSON_IsNumber(v) || !(v->valuedouble > -1e300 && v->valuedouble < 1e300)) {
		errs_add(e, "%s%s must be a number conforming to the specified constraints", prefix,
			 key);
		return false;
	}
	*out = v->valuedouble;
	return true;
}

bool opt_integer(const cJSON *obj, const char *key, const char *prefix, struct api_errs *e,
		 int64_t *out)
{
	const cJSON *v = member(obj, key);

	if (!v)
		return false;
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= -2147483648.0) ||
	    !(v->valuedouble <= 2147483647.0) ||
	    (double)(int64_t)v->valuedouble != v->valuedouble) {
		errs_add(e, "%s%s must be an integer number", prefix, key);
		return false;
	}
	*out = (int64_t)v->valuedouble;
	return true;
}

const cJSON *opt_object(const cJSON *obj, const char *key, const char *prefix, struct api_errs *e)
{
	const cJSON *v = member(obj, key);

	if (!v)
		return NULL;
	if (!cJSON_IsObject(v)) {
		errs_add(e, "%s%s must be an object", prefix, key);
		return NULL;
	}
	return v;
}

const cJSON *opt_array(const cJSON *obj, const char *key, const char *prefix, struct api_errs *e)
{
	const cJSON *v = member(obj, key);

	if (!v)
		return NULL;
	if (!cJSON_IsArray(v)) {
		errs_add(e, "%s%s must be an array", prefix, key);
		return NULL;
	}
	return v;
}

static bool has_control(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

static bool valid_env_key(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MAX_ENV_KEY)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= 0x20 || *p == '=' || *p >= 0x7f)
			return false;
	return true;
}

void check_string_map(const cJSON *map, const char *what, bool env_keys, struct api_errs *e)
{
	const cJSON *m;
	int n = 0;
	char tmp[80];

	cJSON_ArrayForEach(m, map)
	{
		const char *key = m->string;

		if (++n > MAX_MAP_ENTRIES) {
			errs_add(e, "%s may have at most %d entries", what, MAX_MAP_ENTRIES);
			return;
		}
		if (!cJSON_IsString(m)) {
			errs_add(e, "%s.%s must be a string", what, clip(key, tmp));
			continue;
		}
		if (env_keys) {
			if (!valid_env_key(key))
				errs_add(e,
					 "env key \"%s\" is invalid: use 1 to %d printable "
					 "characters without '=' or spaces",
					 clip(key, tmp), MAX_ENV_KEY);
			else if (strlen(m->valuestring) > MAX_ENV_VALUE)
				errs_add(e, "env.%s must be at most %d bytes long", key,
					 MAX_ENV_VALUE);
			continue;
		}
		if (!key[0] || strlen(key) > MAX_LABEL_KEY || has_control(key))
			errs_add(e,
				 "label key \"%s\" is invalid: use 1 to %d characters without "
				 "control characters",
				 clip(key, tmp), MAX_LABEL_KEY);
		else if (strlen(m->valuestring) > MAX_LABEL_VALUE || has_control(m->valuestring))
			errs_add(e,
				 "label %s has an invalid value: at most %d characters without "
				 "control characters",
				 key, MAX_LABEL_VALUE);
	}
}

bool valid_object_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > STORE_NAME_MAX)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
	      (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (const char *p = s; *p; p++) {
		char ch = *p;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

void check_object_name(const char *name, const char *what, struct api_errs *e)
{
	char tmp[80];

	if (!valid_object_name(name))
		errs_add(e,
			 "Invalid %s name \"%s\": a name is 1 to %d characters from A-Z, a-z, "
			 "0-9, '.', '_' and '-', starting with a letter or a digit",
			 what, clip(name, tmp), STORE_NAME_MAX);
}

/* ---- query parameters ----------------------------------------------------- */

bool query_int(struct api_call *c, const char *name, int64_t min, int64_t max, int64_t dflt,
	       int64_t *out, struct api_errs *e)
{
	const char *v = http_param(c->req, name);
	int64_t n;

	*out = dflt;
	if (!v)
		return true;
	if (parse_int64(v, INT64_MIN, INT64_MAX, &n) < 0) {
		errs_add(e, "%s must be an integer number", name);
		return false;
	}
	if (n < min) {
		errs_add(e, "%s must not be less than %" PRId64, name, min);
		return false;
	}
	if (n > max) {
		errs_add(e, "%s must not be greater than %" PRId64, name, max);
		return false;
	}
	*out = n;
	return true;
}

int query_bool(struct api_call *c, const char *name, struct api_errs *e)
{
	const char *v = http_param(c->req, name);

	if (!v)
		return -1;
	if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, ""))
		return 1;
	if (!strcmp(v, "false") || !strcmp(v, "0"))
		return 0;
	errs_add(e, "%s must be a boolean value", name);
	return -1;
}

/* ---- DTOs ----------------------------------------------------------------- */

static void add_time(cJSON *o, const char *key, int64_t ms)
{
	char iso[32];

	if (ms <= 0) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	iso8601_ms(ms, iso);
	cJSON_AddStringToObject(o, key, iso);
}

static void add_copy(cJSON *o, const char *key, const cJSON *v)
{
	cJSON *dup = v ? cJSON_Duplicate(v, true) : NULL;

	if (dup)
		cJSON_AddItemToObject(o, key, dup);
}

/* Other CreateSandbox fields, echoed as given; @skip lists those a list item omits. */
static void add_extra(cJSON *o, const cJSON *extra, bool full)
{
	static const char *const full_only[] = {"outboundProxyUrl", "otelEndpointOverride", "kvm",
						NULL};
	const cJSON *m;

	cJSON_ArrayForEach(m, extra)
	{
		bool skip = cJSON_GetObjectItemCaseSensitive(o, m->string) != NULL;
		for (size_t i = 0; !full && full_only[i]; i++)
			if (!strcmp(m->string, full_only[i]))
				skip = true;
		if (!skip)
			add_copy(o, m->string, m);
	}
}

cJSON *sandbox_json(const struct api_call *c, const struct store_sandbox_info *s, bool full)
{
	cJSON *o = cJSON_CreateObject();
	char url[300];

	if (!o)
		return NULL;
	api_toolbox_url(c, url, sizeof(url));
	cJSON_AddStringToObject(o, "id", s->id);
	cJSON_AddStringToObject(o, "organizationId", store_organization_id(c->store));
	cJSON_AddStringToObject(o, "name", s->name);
	if (s->snapshot[0])
		cJSON_AddStringToObject(o, "snapshot", s->snapshot);
	cJSON_AddStringToObject(o, "user", s->user);
	if (full)
		add_copy(o, "env", s->env);
	add_copy(o, "labels", s->labels);
	cJSON_AddBoolToObject(o, "public", s->is_public);
	cJSON_AddBoolToObject(
	    o, "networkBlockAll",
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s->extra, "networkBlockAll")));
	cJSON_AddStringToObject(o, "target", s->target);
	cJSON_AddStringToObject(o, "runnerId", "local");
	cJSON_AddNumberToObject(o, "cpu", s->cpu);
	cJSON_AddNumberToObject(o, "gpu", s->gpu);
	cJSON_AddNumberToObject(o, "memory", s->memory);
	cJSON_AddNumberToObject(o, "disk", s->disk);
	cJSON_AddStringToObject(o, "state", s->state);
	cJSON_AddStringToObject(o, "desiredState", s->desired_state);
	if (s->error_reason[0])
		cJSON_AddStringToObject(o, "errorReason", s->error_reason);
	else
		cJSON_AddNullToObject(o, "errorReason");
	cJSON_AddBoolToObject(o, "recoverable", s->recoverable);
	cJSON_AddStringToObject(o, "backupState", "None");
	cJSON_AddNumberToObject(o, "autoStopInterval", (double)s->auto_stop_min);
	cJSON_AddNumberToObject(o, "autoArchiveInterval", (double)s->auto_archive_min);
	cJSON_AddNumberToObject(o, "autoDeleteInterval", (double)s->auto_delete_min);
	if (full)
		add_copy(o, "volumes", s->volumes);
	add_time(o, "createdAt", s->created_ms);
	add_time(o, "updatedAt", s->updated_ms);
	add_time(o, "lastActivityAt", s->last_activity_ms);
	cJSON_AddStringToObject(o, "sandboxClass", "container");
	cJSON_AddStringToObject(o, "daemonVersion", QUAVER_VERSION);
	add_extra(o, s->extra, full);
	cJSON_AddStringToObject(o, "toolboxProxyUrl", url);
	return o;
}

void reply_sandbox(struct api_call *c, struct store_sandbox_info *info)
{
	cJSON *o = sandbox_json(c, info, true);

	store_sandbox_info_free(info);
	if (!o) {
		api_reply_error(c, 500, "Out of memory");
		return;
	}
	http_reply_json(c->resp, 200, o);
}

cJSON *volume_json(const struct api_call *c, const struct store_volume_info *v)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "id", v->id);
	cJSON_AddStringToObject(o, "name", v->name);
	cJSON_AddStringToObject(o, "organizationId", store_organization_id(c->store));
	cJSON_AddStringToObject(o, "state", v->state);
	add_time(o, "createdAt", v->created_ms);
	add_time(o, "updatedAt", v->updated_ms);
	add_time(o, "lastUsedAt", v->last_used_ms);
	if (v->error_reason[0])
		cJSON_AddStringToObject(o, "errorReason", v->error_reason);
	else
		cJSON_AddNullToObject(o, "errorReason");
	return o;
}

cJSON *snapshot_json(const struct api_call *c, const struct store_snapshot_info *s)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *regions;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "id", s->id);
	cJSON_AddStringToObject(o, "organizationId", store_organization_id(c->store));
	cJSON_AddBoolToObject(o, "general", false);
	cJSON_AddStringToObject(o, "name", s->name);
	cJSON_AddStringToObject(o, "state", s->state);
	if (s->size_bytes >= 0)
		/* Daytona reports sizes in GB. */
		cJSON_AddNumberToObject(o, "size",
					(double)((s->size_bytes + 500000) / 1000000) / 1000.0);
	else
		cJSON_AddNullToObject(o, "size");
	cJSON_AddNullToObject(o, "entrypoint");
	cJSON_AddNumberToObject(o, "cpu", s->cpu);
	cJSON_AddNumberToObject(o, "gpu", s->gpu);
	cJSON_AddNumberToObject(o, "mem", s->memory);
	cJSON_AddNumberToObject(o, "disk", s->disk);
	if (s->error_reason[0])
		cJSON_AddStringToObject(o, "errorReason", s->error_reason);
	else
		cJSON_AddNullToObject(o, "errorReason");
	add_time(o, "createdAt", s->created_ms);
	add_time(o, "updatedAt", s->updated_ms);
	add_time(o, "lastUsedAt", s->last_used_ms);
	if (s->source_sandbox_id[0])
		cJSON_AddStringToObject(o, "sourceSandboxId", s->source_sandbox_id);
	else
		cJSON_AddNullToObject(o, "sourceSandboxId");
	regions = cJSON_AddArrayToObject(o, "regionIds");
	if (regions)
		cJSON_AddItemToArray(regions, cJSON_CreateString("local"));
	cJSON_AddStringToObject(o, "sandboxClass", "container");
	return o;
}
