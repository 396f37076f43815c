/*
 * meta.json of sandboxes, volumes and snapshots: the records as JSON.
 * Timestamps are integers (milliseconds since the epoch) so nothing is lost
 * between a write and the next start. Readers are strict about identity and
 * state and lenient about everything else (a missing field takes its default).
 */
#define QUAVERD_STORE_INTERNAL
#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define META_VERSION 1

static bool add_str(cJSON *o, const char *k, const char *v)
{
	return cJSON_AddStringToObject(o, k, v ? v : "") != NULL;
}

static bool add_num(cJSON *o, const char *k, double v)
{
	return cJSON_AddNumberToObject(o, k, v) != NULL;
}

static bool add_copy(cJSON *o, const char *k, const cJSON *v)
{
	cJSON *dup = cJSON_Duplicate(v, true);

	if (!dup)
		return false;
	cJSON_AddItemToObject(o, k, dup);
	return true;
}

static char *finish(cJSON *o, bool ok)
{
	char *s = ok ? cJSON_Print(o) : NULL;

	cJSON_Delete(o);
	return s;
}

static const char *get_str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double get_num(const cJSON *o, const char *k, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static bool get_bool(const cJSON *o, const char *k)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static void get_copy(const cJSON *o, const char *k, int type, cJSON **dst)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	cJSON *dup;

	if (!v || !(v->type & type))
		return;
	dup = cJSON_Duplicate(v, true);
	if (!dup)
		return;
	cJSON_Delete(*dst);
	*dst = dup;
}

static bool id_ok(const char *s)
{
	return s && strlen(s) == STORE_ID_LEN;
}

static void get_field(const cJSON *o, const char *k, char *dst, size_t size)
{
	const char *v = get_str(o, k);

	copy_str(dst, size, v ? v : "");
}

char *sb_to_meta(const struct sandbox *sb)
{
	const struct store_sandbox_info *i = &sb->info;
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;

	ok = ok && add_num(o, "version", META_VERSION);
	ok = ok && add_str(o, "id", i->id) && add_str(o, "name", i->name);
	ok = ok && add_str(o, "snapshot", i->snapshot) && add_str(o, "user", i->user);
	ok = ok && add_str(o, "target", i->target);
	ok = ok && add_str(o, "state", sb_state_name(sb->state));
	ok = ok && add_str(o, "desiredState", sb_state_name(sb->desired));
	ok = ok && add_str(o, "previousState", sb_state_name(sb->prev));
	ok = ok && add_str(o, "errorReason", i->error_reason);
	ok = ok && cJSON_AddBoolToObject(o, "recoverable", i->recoverable);
	ok = ok && cJSON_AddBoolToObject(o, "public", i->is_public);
	ok = ok && add_num(o, "cpu", i->cpu) && add_num(o, "gpu", i->gpu);
	ok = ok && add_num(o, "memory", i->memory) && add_num(o, "disk", i->disk);
	ok = ok && add_num(o, "autoStopInterval", (double)i->auto_stop_min);
	ok = ok && add_num(o, "autoArchiveInterval", (double)i->auto_archive_min);
	ok = ok && add_num(o, "autoDeleteInterval", (double)i->auto_delete_min);
	ok = ok && add_num(o, "createdAtMs", (double)i->created_ms);
	ok = ok && add_num(o, "updatedAtMs", (double)i->updated_ms);
	ok = ok && add_num(o, "lastActivityAtMs", (double)i->last_activity_ms);
	ok = ok && add_num(o, "stoppedAtMs", (double)sb->stopped_ms);
	ok = ok && add_str(o, "previewToken", i->preview_token);
	ok = ok && add_copy(o, "labels", i->labels) && add_copy(o, "env", i->env);
	ok = ok && add_copy(o, "volumes", i->volumes) && add_copy(o, "extra", i->extra);
	return finish(o, ok);
}

int sb_from_meta(const char *json, struct sandbox *sb)
{
	struct store_sandbox_info *i = &sb->info;
	cJSON *o = cJSON_Parse(json);
	const char *id, *state;
	int rc = -EINVAL;

	if (!cJSON_IsObject(o))
		goto out;
	id = get_str(o, "id");
	state = get_str(o, "state");
	if (!id_ok(id) || !state || sb_state_parse(state, &sb->state) < 0)
		goto out;
	copy_str(i->id, sizeof(i->id), id);
	get_field(o, "name", i->name, sizeof(i->name));
	if (!i->name[0])
		copy_str(i->name, sizeof(i->name), id);
	get_field(o, "snapshot", i->snapshot, sizeof(i->snapshot));
	get_field(o, "user", i->user, sizeof(i->user));
	get_field(o, "target", i->target, sizeof(i->target));
	if (!get_str(o, "desiredState") || sb_state_parse(get_str(o, "desiredState"), &sb->desired))
		sb->desired = sb->state;
	if (!get_str(o, "previousState") || sb_state_parse(get_str(o, "previousState"), &sb->prev))
		sb->prev = SB_STOPPED;
	get_field(o, "errorReason", i->error_reason, sizeof(i->error_reason));
	i->recoverable = get_bool(o, "recoverable");
	i->is_public = get_bool(o, "public");
	i->cpu = get_num(o, "cpu", 1);
	i->gpu = get_num(o, "gpu", 0);
	i->memory = get_num(o, "memory", 1);
	i->disk = get_num(o, "disk", 3);
	i->auto_stop_min = (int64_t)get_num(o, "autoStopInterval", 15);
	i->auto_archive_min = (int64_t)get_num(o, "autoArchiveInterval", 10080);
	i->auto_delete_min = (int64_t)get_num(o, "autoDeleteInterval", -1);
	i->created_ms = (int64_t)get_num(o, "createdAtMs", 0);
	i->updated_ms = (int64_t)get_num(o, "updatedAtMs", (double)i->created_ms);
	i->last_activity_ms = (int64_t)get_num(o, "lastActivityAtMs", (double)i->updated_ms);
	sb->stopped_ms = (int64_t)get_num(o, "stoppedAtMs", 0);
	get_field(o, "previewToken", i->preview_token, sizeof(i->preview_token));
	if (!i->preview_token[0])
		random_hex(i->preview_token, 16);
	get_copy(o, "labels", cJSON_Object, &i->labels);
	get_copy(o, "env", cJSON_Object, &i->env);
	get_copy(o, "volumes", cJSON_Array, &i->volumes);
	get_copy(o, "extra", cJSON_Object, &i->extra);
	i->state = sb_state_name(sb->state);
	i->desired_state = sb_state_name(sb->desired);
	rc = 0;
out:
	cJSON_Delete(o);
	return rc;
}

char *vol_to_meta(const struct volume *v)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;

	ok = ok && add_num(o, "version", META_VERSION);
	ok = ok && add_str(o, "id", v->info.id) && add_str(o, "name", v->info.name);
	ok = ok && add_str(o, "state", vol_state_name(v->state));
	ok = ok && add_str(o, "errorReason", v->info.error_reason);
	ok = ok && add_num(o, "createdAtMs", (double)v->info.created_ms);
	ok = ok && add_num(o, "updatedAtMs", (double)v->info.updated_ms);
	ok = ok && add_num(o, "lastUsedAtMs", (double)v->info.last_used_ms);
	return finish(o, ok);
}

int vol_from_meta(const char *json, struct volume *v)
{
	cJSON *o = cJSON_Parse(json);
	const char *id, *state;
	int rc = -EINVAL;

	if (!cJSON_IsObject(o))
		goto out;
	id = get_str(o, "id");
	state = get_str(o, "state");
	if (!id_ok(id) || !state || vol_state_parse(state, &v->state) < 0)
		goto out;
	copy_str(v->info.id, sizeof(v->info.id), id);
	get_field(o, "name", v->info.name, sizeof(v->info.name));
	if (!v->info.name[0])
		copy_str(v->info.name, sizeof(v->info.name), id);
	get_field(o, "errorReason", v->info.error_reason, sizeof(v->info.error_reason));
	v->info.created_ms = (int64_t)get_num(o, "createdAtMs", 0);
	v->info.updated_ms = (int64_t)get_num(o, "updatedAtMs", (double)v->info.created_ms);
	v->info.last_used_ms = (int64_t)get_num(o, "lastUsedAtMs", 0);
	v->info.state = vol_state_name(v->state);
	rc = 0;
out:
	cJSON_Delete(o);
	return rc;
}

char *snap_to_meta(const struct snapshot *sn)
{
	const struct store_snapshot_info *i = &sn->info;
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;

	ok = ok && add_num(o, "version", META_VERSION);
	ok = ok && add_str(o, "id", i->id) && add_str(o, "name", i->name);
	ok = ok && add_str(o, "state", snap_state_name(sn->state));
	ok = ok && add_str(o, "errorReason", i->error_reason);
	ok = ok && add_str(o, "sourceSandboxId", i->source_sandbox_id);
	ok = ok && add_num(o, "cpu", i->cpu) && add_num(o, "gpu", i->gpu);
	ok = ok && add_num(o, "memory", i->memory) && add_num(o, "disk", i->disk);
	ok = ok && add_num(o, "sizeBytes", (double)i->size_bytes);
	ok = ok && add_num(o, "createdAtMs", (double)i->created_ms);
	ok = ok && add_num(o, "updatedAtMs", (double)i->updated_ms);
	ok = ok && add_num(o, "lastUsedAtMs", (double)i->last_used_ms);
	return finish(o, ok);
}

int snap_from_meta(const char *json, struct snapshot *sn)
{
	struct store_snapshot_info *i = &sn->info;
	cJSON *o = cJSON_Parse(json);
	const char *id, *state;
	int rc = -EINVAL;

	if (!cJSON_IsObject(o))
		goto out;
	id = get_str(o, "id");
	state = get_str(o, "state");
	if (!id_ok(id) || !state || snap_state_parse(state, &sn->state) < 0)
		goto out;
	copy_str(i->id, sizeof(i->id), id);
	get_field(o, "name", i->name, sizeof(i->name));
	if (!i->name[0])
		copy_str(i->name, sizeof(i->name), id);
	get_field(o, "errorReason", i->error_reason, sizeof(i->error_reason));
	get_field(o, "sourceSandboxId", i->source_sandbox_id, sizeof(i->source_sandbox_id));
	i->cpu = get_num(o, "cpu", 1);
	i->gpu = get_num(o, "gpu", 0);
	i->memory = get_num(o, "memory", 1);
	i->disk = get_num(o, "disk", 3);
	i->size_bytes = (int64_t)get_num(o, "sizeBytes", -1);
	i->created_ms = (int64_t)get_num(o, "createdAtMs", 0);
	i->updated_ms = (int64_t)get_num(o, "updatedAtMs", (double)i->created_ms);
	i->last_used_ms = (int64_t)get_num(o, "lastUsedAtMs", 0);
	i->state = snap_state_name(sn->state);
	rc = 0;
out:
	cJSON_Delete(o);
	return rc;
}
