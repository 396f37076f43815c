/*
 * libFuzzer target: the Daytona client's decoders of what a backend sends
 * (src/daytona): sandbox, volume and snapshot DTOs, FileInfo listings,
 * error bodies and timestamps. The first byte picks the decoder, so one
 * corpus covers them all; the rest is the answer's body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "daytona.h"
#include "dt_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated, writable copy (the list parsers rewrite their text in place). */
static char *text_copy(const uint8_t *data, size_t size)
{
	char *t = malloc(size + 1);

	if (t) {
		memcpy(t, data, size);
		t[size] = '\0';
	}
	return t;
}

static void objects(const cJSON *root)
{
	const cJSON *item;

	if (cJSON_IsArray(root)) {
		cJSON_ArrayForEach(item, root) objects(item);
		return;
	}
	/* Paginated answers: {"items": [...]} */
	if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "items")))
		objects(cJSON_GetObjectItemCaseSensitive(root, "items"));

	struct dt_sandbox s;
	struct dt_volume v;
	struct dt_snapshot sn;

	memset(&s, 0, sizeof(s));
	if (dt_sandbox_from_json(root, &s) == 0)
		dt_sandbox_clear(&s);
	memset(&v, 0, sizeof(v));
	if (dt_volume_from_json(root, &v) == 0)
		dt_volume_clear(&v);
	memset(&sn, 0, sizeof(sn));
	if (dt_snapshot_from_json(root, &sn) == 0)
		dt_snapshot_clear(&sn);
	free(dt_json_redacted(root));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dt_error err;
	char *text;

	if (size < 1)
		return 0;
	text = text_copy(data + 1, size - 1);
	if (!text)
		return 0;
	memset(&err, 0, sizeof(err));
	switch (data[0] % 5) {
	case 0: {
		cJSON *root = cJSON_ParseWithLength(text, size - 1);

		if (root)
			objects(root);
		cJSON_Delete(root);
		break;
	}
	case 1: {
		struct dt_file_list list;

		memset(&list, 0, sizeof(list));
		if (dt_file_list_parse(text, size - 1, "fuzz", &list, &err) == 0)
			dt_file_list_clear(&list);
		break;
	}
	case 2: {
		struct dt_file_info info;

		memset(&info, 0, sizeof(info));
		if (dt_file_info_parse(text, size - 1, "fuzz", &info, &err) == 0)
			dt_file_info_clear(&info);
		break;
	}
	case 3:
		/* The status comes from the first bytes of the body. */
		dt_error_from_http(&err, 100 + (size > 1 ? data[1] : 0) * 2, text, size - 1,
				   "fuzz");
		break;
	case 4: {
		struct timespec ts;
		bool is_dir = false;
		char *nl = strchr(text, '\n');

		dt_parse_rfc3339(text, &ts);
		dt_parse_go_time(text, &ts);
		if (nl) {
			*nl = '\0';
			dt_file_mode(text, nl + 1, &is_dir);
		} else {
			dt_file_mode(text, NULL, &is_dir);
		}
		break;
	}
	}
	free(text);
	return 0;
}
