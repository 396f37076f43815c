/* The node kinds of fs-layout.md as a table, and the small name helpers. */
#include "node.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

#define DIR_MODE (S_IFDIR | 0755)
#define RW_MODE (S_IFREG | 0644)
#define RO_MODE (S_IFREG | 0444)
#define LINK_MODE (S_IFLNK | 0777)

/* Order within a parent is the listing order. */
static const struct kind_info kinds[NK_COUNT] = {
	[NK_NONE] = {NULL, NK_NONE, 0, OBJ_NONE},
	[NK_ROOT] = {NULL, NK_NONE, DIR_MODE, OBJ_NONE},
	[NK_SANDBOXES] = {"sandboxes", NK_ROOT, DIR_MODE, OBJ_NONE},
	[NK_VOLUMES] = {"volumes", NK_ROOT, DIR_MODE, OBJ_NONE},
	[NK_SNAPSHOTS] = {"snapshots", NK_ROOT, DIR_MODE, OBJ_NONE},
	[NK_STATUS] = {"status", NK_ROOT, RO_MODE, OBJ_NONE},
	[NK_DEFAULTS] = {"defaults", NK_ROOT, RW_MODE, OBJ_NONE},
	[NK_CONTROL] = {"control", NK_ROOT, RW_MODE, OBJ_NONE},
	[NK_ROOT_ERROR] = {"error", NK_ROOT, RO_MODE, OBJ_NONE},

	[NK_SANDBOX] = {NULL, NK_SANDBOXES, DIR_MODE, OBJ_SANDBOX},
	[NK_SB_IDLINK] = {NULL, NK_SANDBOXES, LINK_MODE, OBJ_SANDBOX},
	[NK_SB_STATE] = {"state", NK_SANDBOX, RW_MODE, OBJ_SANDBOX},
	[NK_SB_ERROR] = {"error", NK_SANDBOX, RO_MODE, OBJ_SANDBOX},
	[NK_SB_ID] = {"id", NK_SANDBOX, RO_MODE, OBJ_SANDBOX},
	[NK_SB_INFO] = {"info.json", NK_SANDBOX, RO_MODE, OBJ_SANDBOX},
	[NK_SB_LABELS] = {"labels", NK_SANDBOX, DIR_MODE, OBJ_SANDBOX},
	[NK_SB_LABEL] = {NULL, NK_SB_LABELS, RW_MODE, OBJ_SANDBOX},
	[NK_SB_ENVDIR] = {"env", NK_SANDBOX, DIR_MODE, OBJ_SANDBOX},
	[NK_SB_ENV] = {NULL, NK_SB_ENVDIR, RO_MODE, OBJ_SANDBOX},
	[NK_SB_AUTOSTOP] = {"autostop", NK_SANDBOX, RW_MODE, OBJ_SANDBOX},
	[NK_SB_AUTOARCHIVE] = {"autoarchive", NK_SANDBOX, RW_MODE, OBJ_SANDBOX},
	[NK_SB_AUTODELETE] = {"autodelete", NK_SANDBOX, RW_MODE, OBJ_SANDBOX},
	[NK_SB_RESOURCES] = {"resources", NK_SANDBOX, RO_MODE, OBJ_SANDBOX},
	[NK_SB_SNAPSHOT] = {"snapshot", NK_SANDBOX, RW_MODE, OBJ_SANDBOX},
	[NK_SB_PORTS] = {"ports", NK_SANDBOX, DIR_MODE, OBJ_SANDBOX},
	[NK_SB_PORT] = {NULL, NK_SB_PORTS, RO_MODE, OBJ_SANDBOX},
	[NK_SB_FILES] = {"files", NK_SANDBOX, DIR_MODE, OBJ_SANDBOX},
	[NK_SB_RUNS] = {"runs", NK_SANDBOX, DIR_MODE, OBJ_SANDBOX},
	[NK_SB_PTY] = {"pty", NK_SANDBOX, RW_MODE, OBJ_SANDBOX},
	[NK_SB_TERMINALS] = {"terminals", NK_SANDBOX, DIR_MODE, OBJ_SANDBOX},

	[NK_VOLUME] = {NULL, NK_VOLUMES, DIR_MODE, OBJ_VOLUME},
	[NK_VOL_ID] = {"id", NK_VOLUME, RO_MODE, OBJ_VOLUME},
	[NK_VOL_STATE] = {"state", NK_VOLUME, RO_MODE, OBJ_VOLUME},
	[NK_VOL_INFO] = {"info.json", NK_VOLUME, RO_MODE, OBJ_VOLUME},

	[NK_SNAPSHOT] = {NULL, NK_SNAPSHOTS, DIR_MODE, OBJ_SNAPSHOT},
	[NK_SNAP_ID] = {"id", NK_SNAPSHOT, RO_MODE, OBJ_SNAPSHOT},
	[NK_SNAP_STATE] = {"state", NK_SNAPSHOT, RO_MODE, OBJ_SNAPSHOT},
	[NK_SNAP_INFO] = {"info.json", NK_SNAPSHOT, RO_MODE, OBJ_SNAPSHOT},
};

const struct kind_info *kind_info(enum node_kind kind)
{
	if (kind <= NK_NONE || kind >= NK_COUNT)
		return &kinds[NK_NONE];
	return &kinds[kind];
}

enum node_kind kind_child_by_name(enum node_kind dir, const char *name)
{
	for (int k = NK_ROOT; k < NK_COUNT; k++)
		if (kinds[k].parent == dir && kinds[k].name && strcmp(kinds[k].name, name) == 0)
			return (enum node_kind)k;
	return NK_NONE;
}

size_t kind_fixed_children(enum node_kind dir, enum node_kind *out, size_t max)
{
	size_t n = 0;

	for (int k = NK_ROOT; k < NK_COUNT && n < max; k++)
		if (kinds[k].parent == dir && kinds[k].name)
			out[n++] = (enum node_kind)k;
	return n;
}

bool node_make(struct node_info *n, enum node_kind kind, const char *obj_id,
	       const char *obj_name, const char *name)
{
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	if (!name)
		name = kind_info(kind)->name ? kind_info(kind)->name : "";
	return copy_str(n->obj_id, sizeof(n->obj_id), obj_id ? obj_id : "") &&
	       copy_str(n->obj_name, sizeof(n->obj_name), obj_name ? obj_name : "") &&
	       copy_str(n->name, sizeof(n->name), name);
}

void node_path(const struct node_info *n, char *out, size_t size)
{
	const struct kind_info *ki = kind_info(n->kind);
	const char *coll = ki->obj == OBJ_SANDBOX  ? "sandboxes"
			   : ki->obj == OBJ_VOLUME ? "volumes"
						   : "snapshots";

	switch (n->kind) {
	case NK_ROOT:
		snprintf(out, size, "/");
		return;
	case NK_SANDBOX:
	case NK_VOLUME:
	case NK_SNAPSHOT:
	case NK_SB_IDLINK:
		snprintf(out, size, "%s/%s", coll, n->name);
		return;
	case NK_SB_LABEL:
		snprintf(out, size, "sandboxes/%s/labels/%s", n->obj_name, n->name);
		return;
	case NK_SB_ENV:
		snprintf(out, size, "sandboxes/%s/env/%s", n->obj_name, n->name);
		return;
	case NK_SB_PORT:
		snprintf(out, size, "sandboxes/%s/ports/%s", n->obj_name, n->name);
		return;
	default:
		break;
	}
	if (ki->obj == OBJ_NONE)
		snprintf(out, size, "%s", n->name);
	else
		snprintf(out, size, "%s/%s/%s", coll, n->obj_name, n->name);
}

bool name_is_file_name(const char *name)
{
	size_t len = strlen(name);

	return len > 0 && len <= 255 && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
	       !strchr(name, '/');
}

bool name_is_probe(const char *name)
{
	static const char *const probes[] = {
		".Trash", ".hidden", "autorun.inf", ".xdg-volume-info", ".directory",
		"Desktop.ini", ".DS_Store",
	};

	for (size_t i = 0; i < ARRAY_SIZE(probes); i++)
		if (strcmp(name, probes[i]) == 0)
			return true;
	/* .Trash-UID, for any uid */
	return strncmp(name, ".Trash-", 7) == 0;
}
