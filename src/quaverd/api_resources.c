/*
 * /api/volumes and /api/snapshots (daytona-api.md sections 3 and 4).
 */
#define QUAVERD_API_INTERNAL
#include "api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- volumes -------------------------------------------------------------- */

static void reply_volume(struct api_call *c, int rc, const struct store_volume_info *v,
			 const struct store_err *err)
{
	cJSON *o;

	if (rc < 0) {
		api_store_error(c, rc, err);
		return;
	}
	o = volume_json(c, v);
	if (!o)
		api_reply_error(c, 500, "Out of memory");
	else
		http_reply_json(c->resp, 200, o);
}

static void create_volume(struct api_call *c)
{
	static const char *const fields[] = {"name", NULL};
	struct store_volume_info v;
	struct store_err err = {{0}};
	struct api_errs e = {BUF_INIT, 0};
	const char *name;
	cJSON *body = api_body(c);

	if (!body)
		return;
	check_known(body, fields, "", &e);
	name = opt_string(body, "name", "", &e);
	if (name)
		check_object_name(name, "volume", &e);
	if (!errs_reply(c, &e))
		reply_volume(c, store_volume_create(c->store, name, &v, &err), &v, &err);
	cJSON_Delete(body);
	errs_free(&e);
}

static void list_volumes(struct api_call *c)
{
	struct store_volume_info *items = NULL;
	struct store_err err = {{0}};
	size_t count = 0;
	cJSON *arr;
	int rc;

	/* includeDeleted is accepted: deleted volumes are gone, so it adds nothing. */
	rc = store_volume_list(c->store, &items, &count, &err);
	if (rc < 0) {
		api_store_error(c, rc, &err);
		return;
	}
	arr = cJSON_CreateArray();
	for (size_t i = 0; arr && i < count; i++) {
		cJSON *o = volume_json(c, &items[i]);
		if (o)
			cJSON_AddItemToArray(arr, o);
	}
	free(items);
	http_reply_json(c->resp, 200, arr);
}

void api_volume_route(struct api_call *c)
{
	struct store_volume_info v;
	struct store_err err = {{0}};
	int rc;

	if (c->nsegs == 1) {
		if (api_method(c, "GET"))
			list_volumes(c);
		else if (api_method(c, "POST"))
			create_volume(c);
		else
			api_no_route(c);
		return;
	}
	if (c->nsegs == 3 && !strcmp(c->segs[1], "by-name") && api_method(c, "GET")) {
		reply_volume(c, store_volume_get_by_name(c->store, c->segs[2], &v, &err), &v, &err);
		return;
	}
	if (c->nsegs != 2) {
		api_no_route(c);
		return;
	}
	if (api_method(c, "GET")) {
		reply_volume(c, store_volume_get(c->store, c->segs[1], &v, &err), &v, &err);
	} else if (api_method(c, "DELETE")) {
		rc = store_volume_delete(c->store, c->segs[1], &err);
		if (rc < 0)
			api_store_error(c, rc, &err);
		else
			api_reply_empty(c, 200);
	} else {
		api_no_route(c);
	}
}

/* ---- snapshots ------------------------------------------------------------ */

static void list_snapshots(struct api_call *c)
{
	struct store_snapshot_info *items = NULL;
	struct store_err err = {{0}};
	struct api_errs e = {BUF_INIT, 0};
	size_t count = 0, total = 0;
	int64_t page, limit;
	cJSON *o, *arr;
	int rc;

	query_int(c, "page", 1, 1000000, 1, &page, &e);
	query_int(c, "limit", 1, 200, 100, &limit, &e);
	if (errs_reply(c, &e)) {
		errs_free(&e);
		return;
	}
	rc = store_snapshot_list(c->store, http_param(c->req, "name"),
				 http_param(c->req, "sourceSandboxId"), (size_t)page, (size_t)limit,
				 &items, &count, &total, &err);
	if (rc < 0) {
		api_store_error(c, rc, &err);
		return;
	}
	o = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(o, "items");
	for (size_t i = 0; arr && i < count; i++) {
		cJSON *item = snapshot_json(c, &items[i]);
		if (item)
			cJSON_AddItemToArray(arr, item);
	}
	free(items);
	cJSON_AddNumberToObject(o, "total", (double)total);
	cJSON_AddNumberToObject(o, "page", (double)page);
	cJSON_AddNumberToObject(o, "totalPages",
				(double)((total + (size_t)limit - 1) / (size_t)limit));
	http_reply_json(c->resp, 200, o);
}

/* quaverd takes snapshots of sandboxes only: it has no image builder. */
static void create_snapshot(struct api_call *c)
{
	static const char *const fields[] = {
	    "name", "imageName", "entrypoint", "cpu",	       "gpu",	  "gpuType", "memory",
	    "disk", "buildInfo", "regionId",   "sandboxClass", "general", NULL};
	struct api_errs e = {BUF_INIT, 0};
	cJSON *body = api_body(c);
	double num;

	if (!body)
		return;
	check_known(body, fields, "", &e);
	opt_string(body, "name", "", &e);
	opt_string(body, "imageName", "", &e);
	opt_array(body, "entrypoint", "", &e);
	opt_number(body, "cpu", "", &e, &num);
	opt_number(body, "gpu", "", &e, &num);
	opt_number(body, "memory", "", &e, &num);
	opt_number(body, "disk", "", &e, &num);
	opt_object(body, "buildInfo", "", &e);
	opt_string(body, "regionId", "", &e);
	if (!errs_reply(c, &e))
		api_reply_error(c, 400,
				"quaverd makes snapshots only from sandboxes and cannot pull or "
				"build images: use POST /api/sandbox/{idOrName}/snapshot "
				"with {\"name\": ...}");
	cJSON_Delete(body);
	errs_free(&e);
}

static void activate_snapshot(struct api_call *c, const char *id)
{
	struct store_snapshot_info s;
	struct store_err err = {{0}};
	int rc = store_snapshot_get(c->store, id, &s, &err);

	if (rc < 0)
		api_store_error(c, rc, &err);
	else if (!strcmp(s.state, "active"))
		api_reply_error(c, 400, "Snapshot %s is already active", id);
	else
		api_reply_error(c, 400, "Snapshot %s cannot be activated - it is in %s state", id,
				s.state);
}

void api_snapshot_route(struct api_call *c)
{
	struct store_snapshot_info s;
	struct store_err err = {{0}};
	cJSON *o;
	int rc;

	if (c->nsegs == 1) {
		if (api_method(c, "GET"))
			list_snapshots(c);
		else if (api_method(c, "POST"))
			create_snapshot(c);
		else
			api_no_route(c);
		return;
	}
	if (c->nsegs == 3 && !strcmp(c->segs[2], "activate") && api_method(c, "POST")) {
		activate_snapshot(c, c->segs[1]);
		return;
	}
	if (c->nsegs != 2) {
		api_no_route(c);
		return;
	}
	if (api_method(c, "GET")) {
		rc = store_snapshot_get(c->store, c->segs[1], &s, &err);
		if (rc < 0) {
			api_store_error(c, rc, &err);
			return;
		}
		o = snapshot_json(c, &s);
		http_reply_json(c->resp, 200, o);
	} else if (api_method(c, "DELETE")) {
		rc = store_snapshot_delete(c->store, c->segs[1], &err);
		if (rc < 0)
			api_store_error(c, rc, &err);
		else
			api_reply_empty(c, 200);
	} else {
		api_no_route(c);
	}
}
