/*
 * DTO parsing: full records, partial ones, hostile ones (wrong types, nulls,
 * huge maps), the redaction of info.json, and the percent-encoding of the
 * names that go into URLs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dt_internal.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #cond);          \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

static const char *label(const struct dt_sandbox *s, const char *key)
{
	for (size_t i = 0; i < s->nlabels; i++)
		if (strcmp(s->labels[i].key, key) == 0)
			return s->labels[i].value;
	return NULL;
}

static const char *env(const struct dt_sandbox *s, const char *key)
{
	for (size_t i = 0; i < s->nenv; i++)
		if (strcmp(s->env[i].key, key) == 0)
			return s->env[i].value;
	return NULL;
}

static int parse_sandbox(const char *text, struct dt_sandbox *s)
{
	cJSON *root = cJSON_Parse(text);
	int rc;

	if (!root) {
		fprintf(stderr, "test JSON does not parse: %.60s\n", text);
		exit(2);
	}
	rc = dt_sandbox_from_json(root, s);
	cJSON_Delete(root);
	return rc;
}

static const char full_sandbox[] =
	"{\"id\":\"0d5c1a2e-1111-4222-8333-944455556666\",\"organizationId\":\"org-1\","
	"\"name\":\"demo\",\"snapshot\":\"daytona-base\",\"user\":\"daytona\","
	"\"env\":{\"LANG\":\"C.UTF-8\",\"GITHUB_TOKEN\":\"ghp_secret\"},"
	"\"labels\":{\"code-toolbox-language\":\"python\",\"team\":\"a\"},"
	"\"public\":true,\"target\":\"us\",\"cpu\":2,\"gpu\":0,\"memory\":4,\"disk\":10,"
	"\"state\":\"started\",\"desiredState\":\"started\",\"errorReason\":null,"
	"\"recoverable\":false,\"autoStopInterval\":15,\"autoArchiveInterval\":10080,"
	"\"autoDeleteInterval\":-1,"
	"\"volumes\":[{\"volumeId\":\"v1\",\"mountPath\":\"/data\",\"subpath\":\"sub\"},"
	"{\"volumeId\":\"v2\",\"mountPath\":\"/other\"}],"
	"\"toolboxProxyUrl\":\"http://127.0.0.1:1/toolbox\","
	"\"createdAt\":\"2026-11-29T17:38:03.123Z\",\"updatedAt\":\"2026-11-29T17:38:04.000Z\","
	"\"lastActivityAt\":\"2026-11-29T17:38:05.000Z\",\"unknownField\":{\"x\":[1,2]}}";

static void test_full_sandbox(void)
{
	struct dt_sandbox s;

	CHECK(parse_sandbox(full_sandbox, &s) == 0, "full record refused");
	CHECK(strcmp(s.id, "0d5c1a2e-1111-4222-8333-944455556666") == 0, "id %s", s.id);
	CHECK(strcmp(s.name, "demo") == 0, "name %s", s.name);
	CHECK(strcmp(s.organization_id, "org-1") == 0, "org");
	CHECK(strcmp(s.state, "started") == 0 && strcmp(s.desired_state, "started") == 0, "state");
	CHECK(s.error_reason == NULL, "null errorReason should be NULL");
	CHECK(strcmp(s.snapshot, "daytona-base") == 0 && strcmp(s.user, "daytona") == 0, "snap");
	CHECK(strcmp(s.target, "us") == 0 && s.is_public, "target/public");
	CHECK(s.cpu == 2 && s.gpu == 0 && s.memory == 4 && s.disk == 10, "resources");
	CHECK(s.auto_stop_interval == 15 && s.auto_archive_interval == 10080 &&
		      s.auto_delete_interval == -1,
	      "intervals");
	CHECK(s.nlabels == 2 && strcmp(label(&s, "team"), "a") == 0, "labels");
	CHECK(s.has_env && s.nenv == 2 && strcmp(env(&s, "LANG"), "C.UTF-8") == 0, "env");
	CHECK(strcmp(env(&s, "GITHUB_TOKEN"), "ghp_secret") == 0, "env keeps real values");
	CHECK(s.nvolumes == 2 && strcmp(s.volumes[0].volume_id, "v1") == 0 &&
		      strcmp(s.volumes[0].mount_path, "/data") == 0 &&
		      strcmp(s.volumes[0].subpath, "sub") == 0 && s.volumes[1].subpath == NULL,
	      "volumes");
	CHECK(strcmp(s.toolbox_proxy_url, "http://127.0.0.1:1/toolbox") == 0, "proxy url");
	CHECK(strcmp(s.created_at, "2026-11-29T17:38:03.123Z") == 0 && s.last_activity_at, "dates");
	CHECK(s.json && strstr(s.json, "\"demo\"") && strstr(s.json, "unknownField"),
	      "json keeps the record");
	CHECK(!strstr(s.json, "ghp_secret"), "json leaks a token: %s", s.json);
	CHECK(strstr(s.json, "\"GITHUB_TOKEN\":\t\"***\""), "token not masked: %s", s.json);
	CHECK(strchr(s.json, '\n') != NULL, "json is not pretty-printed");
	dt_sandbox_clear(&s);
	CHECK(s.id == NULL && s.labels == NULL && s.json == NULL, "clear leaves pointers");
	dt_sandbox_clear(&s); /* twice is harmless */
}

static void test_partial_and_wrong_types(void)
{
	struct dt_sandbox s;

	/* A list item: minimal, no env. */
	CHECK(parse_sandbox("{\"id\":\"abc\"}", &s) == 0, "minimal record refused");
	CHECK(strcmp(s.id, "abc") == 0 && strcmp(s.name, "") == 0 && strcmp(s.state, "unknown") == 0,
	      "defaults: name '%s' state '%s'", s.name, s.state);
	CHECK(s.organization_id && s.user && s.target && s.toolbox_proxy_url,
	      "identity strings must not be NULL");
	CHECK(!s.has_env && s.nenv == 0 && s.nlabels == 0 && s.nvolumes == 0, "empty maps");
	CHECK(s.desired_state == NULL && s.snapshot == NULL && s.created_at == NULL, "NULLs");
	CHECK(s.auto_delete_interval == -1, "absent autodelete is off");
	dt_sandbox_clear(&s);

	/* Every field of the wrong type reads as absent. */
	CHECK(parse_sandbox("{\"id\":\"abc\",\"name\":7,\"state\":[\"started\"],\"labels\":[1,2],"
			    "\"env\":\"x\",\"cpu\":\"2\",\"public\":\"true\",\"recoverable\":1,"
			    "\"autoStopInterval\":\"15\",\"volumes\":{\"a\":1},"
			    "\"toolboxProxyUrl\":null,\"errorReason\":{},\"snapshot\":false}",
			    &s) == 0,
	      "wrong types refused");
	CHECK(strcmp(s.name, "") == 0 && strcmp(s.state, "unknown") == 0, "wrong-typed strings");
	CHECK(s.nlabels == 0 && !s.has_env && s.cpu == 0 && !s.is_public && !s.recoverable,
	      "wrong-typed fields");
	CHECK(s.auto_stop_interval == 0 && s.nvolumes == 0 && strcmp(s.toolbox_proxy_url, "") == 0,
	      "wrong-typed interval/volumes/url");
	CHECK(s.error_reason == NULL && s.snapshot == NULL, "wrong-typed optional strings");
	dt_sandbox_clear(&s);

	/* Map values that are not strings are skipped, the rest kept. */
	CHECK(parse_sandbox("{\"id\":\"abc\",\"labels\":{\"a\":\"1\",\"b\":2,\"c\":null,\"d\":\"4\"},"
			    "\"volumes\":[{\"mountPath\":\"/x\"},7,{\"volumeId\":\"v\"}]}",
			    &s) == 0,
	      "mixed maps refused");
	CHECK(s.nlabels == 2 && label(&s, "a") && label(&s, "d") && !label(&s, "b"),
	      "mixed labels: %zu", s.nlabels);
	CHECK(s.nvolumes == 1 && strcmp(s.volumes[0].volume_id, "v") == 0 &&
		      strcmp(s.volumes[0].mount_path, "") == 0,
	      "volumes without id are skipped");
	dt_sandbox_clear(&s);

	/* Duplicate keys: the last wins, once. */
	CHECK(parse_sandbox("{\"id\":\"abc\",\"labels\":{\"k\":\"1\",\"k\":\"2\"}}", &s) == 0, "dup");
	CHECK(s.nlabels == 1 && strcmp(label(&s, "k"), "2") == 0, "duplicate label keys");
	dt_sandbox_clear(&s);

	/* Huge and out-of-range numbers are clamped, not undefined. */
	CHECK(parse_sandbox("{\"id\":\"abc\",\"autoStopInterval\":1e300,"
			    "\"autoArchiveInterval\":-1e300,\"cpu\":1e308}",
			    &s) == 0,
	      "huge numbers");
	CHECK(s.auto_stop_interval == 2147483647 && s.auto_archive_interval == -2147483647 - 1,
	      "clamping: %d %d", s.auto_stop_interval, s.auto_archive_interval);
	dt_sandbox_clear(&s);
}

static void test_refused(void)
{
	struct dt_sandbox s;
	struct dt_volume v;
	struct dt_snapshot p;
	cJSON *root;

	CHECK(parse_sandbox("{\"name\":\"no id\"}", &s) == -EIO, "a record without an id");
	CHECK(s.id == NULL, "refused record leaves a cleared struct");
	CHECK(parse_sandbox("{\"id\":\"\"}", &s) == -EIO, "an empty id");
	CHECK(parse_sandbox("{\"id\":5}", &s) == -EIO, "a numeric id");
	CHECK(parse_sandbox("[]", &s) == -EIO, "an array");
	CHECK(parse_sandbox("\"id\"", &s) == -EIO, "a string");
	CHECK(parse_sandbox("null", &s) == -EIO, "null");
	CHECK(dt_sandbox_from_json(NULL, &s) == -EIO, "NULL tree");
	root = cJSON_Parse("[1]");
	CHECK(dt_volume_from_json(root, &v) == -EIO, "volume from an array");
	CHECK(dt_snapshot_from_json(root, &p) == -EIO, "snapshot from an array");
	cJSON_Delete(root);
}

static void test_many_labels(void)
{
	struct buf text = BUF_INIT;
	struct dt_sandbox s;
	cJSON *root;

	buf_append_str(&text, "{\"id\":\"big\",\"labels\":{");
	for (int i = 0; i < DT_MAX_ITEMS; i++)
		buf_printf(&text, "%s\"k%d\":\"v%d\"", i ? "," : "", i, i);
	buf_append_str(&text, "}}");
	root = cJSON_ParseWithLength(text.data, text.len);
	CHECK(root != NULL, "100k labels JSON");
	CHECK(dt_sandbox_from_json(root, &s) == 0, "100000 labels refused");
	CHECK(s.nlabels == DT_MAX_ITEMS, "labels kept: %zu", s.nlabels);
	dt_sandbox_clear(&s);
	cJSON_Delete(root);

	/* One more than the bound is a hostile answer. */
	text.len -= 2;
	text.data[text.len] = '\0';
	buf_append_str(&text, ",\"one-more\":\"x\"}}");
	root = cJSON_ParseWithLength(text.data, text.len);
	CHECK(dt_sandbox_from_json(root, &s) == -EIO, "100001 labels accepted");
	CHECK(s.labels == NULL, "refused record keeps labels");
	cJSON_Delete(root);
	buf_free(&text);
}

static void test_volume_and_snapshot(void)
{
	struct dt_volume v;
	struct dt_snapshot p;
	cJSON *root;

	root = cJSON_Parse("{\"id\":\"v1\",\"name\":\"data\",\"organizationId\":\"o\","
			   "\"state\":\"ready\",\"createdAt\":\"t1\",\"updatedAt\":\"t2\","
			   "\"lastUsedAt\":null,\"errorReason\":null}");
	CHECK(dt_volume_from_json(root, &v) == 0, "volume refused");
	CHECK(strcmp(v.id, "v1") == 0 && strcmp(v.name, "data") == 0 && strcmp(v.state, "ready") == 0,
	      "volume fields");
	CHECK(v.last_used_at == NULL && v.error_reason == NULL && strcmp(v.created_at, "t1") == 0,
	      "volume optional fields");
	CHECK(v.json && strstr(v.json, "\"ready\""), "volume json");
	dt_volume_clear(&v);
	cJSON_Delete(root);

	root = cJSON_Parse("{\"id\":\"s1\",\"name\":\"snap\",\"state\":\"active\",\"cpu\":1,"
			   "\"mem\":2,\"disk\":3,\"size\":0.5,\"imageName\":\"ubuntu\","
			   "\"sourceSandboxId\":\"sb\",\"errorReason\":null,\"general\":false,"
			   "\"entrypoint\":null,\"registryPassword\":\"hunter2\"}");
	CHECK(dt_snapshot_from_json(root, &p) == 0, "snapshot refused");
	CHECK(strcmp(p.name, "snap") == 0 && strcmp(p.state, "active") == 0 && p.mem == 2 &&
		      p.size == 0.5 && strcmp(p.source_sandbox_id, "sb") == 0 &&
		      strcmp(p.image_name, "ubuntu") == 0,
	      "snapshot fields");
	CHECK(!strstr(p.json, "hunter2"), "snapshot json leaks a password");
	dt_snapshot_clear(&p);
	cJSON_Delete(root);

	root = cJSON_Parse("{\"id\":\"s2\"}");
	CHECK(dt_snapshot_from_json(root, &p) == 0 && strcmp(p.state, "unknown") == 0 &&
		      strcmp(p.name, "") == 0 && p.image_name == NULL,
	      "minimal snapshot");
	dt_snapshot_clear(&p);
	cJSON_Delete(root);
}

static void test_redaction(void)
{
	cJSON *root = cJSON_Parse(
		"{\"id\":\"x\",\"token\":\"t1\",\"apiKey\":\"k1\",\"api_key\":\"k2\","
		"\"Authorization\":\"Bearer b\",\"nested\":{\"clientSecret\":\"s\",\"list\":"
		"[{\"password\":\"p\"},{\"ok\":\"visible\"}]},\"secrets\":[\"a\",\"b\"],"
		"\"previewToken\":{\"deep\":\"d\"},\"DB_PASSWORD\":12,\"name\":\"token-free\"}");
	char *text = dt_json_redacted(root);

	CHECK(text != NULL, "redaction failed");
	for (const char *leak = "t1\0k1\0k2\0Bearer b\0\"s\"\0\"p\"\0\"a\"\0\"d\"\0" "12\0"; *leak;
	     leak += strlen(leak) + 1)
		CHECK(!strstr(text, leak), "leaks %s in %s", leak, text);
	CHECK(strstr(text, "visible") && strstr(text, "token-free"), "over-redacted: %s", text);
	cJSON_free(text);
	cJSON_Delete(root);

	CHECK(dt_key_is_secret("X-API-KEY") && dt_key_is_secret("ANTHROPIC_API_KEY") &&
		      dt_key_is_secret("authorization") && dt_key_is_secret("Passwd"),
	      "secret keys");
	CHECK(!dt_key_is_secret("name") && !dt_key_is_secret("toolboxProxyUrl") &&
		      !dt_key_is_secret("state"),
	      "ordinary keys");
}

static void test_url_encoding(void)
{
	struct buf b = BUF_INIT;

	CHECK(dt_path(&b, "sandbox", "a b/c?d#e%f&g=h", "start", NULL) == 0, "dt_path");
	CHECK(strcmp(b.data, "/sandbox/a%20b%2Fc%3Fd%23e%25f%26g%3Dh/start") == 0, "path: %s",
	      b.data);
	buf_reset(&b);
	CHECK(dt_path(&b, "sandbox", "demo-1.2_x~y", NULL) == 0 &&
		      strcmp(b.data, "/sandbox/demo-1.2_x~y") == 0,
	      "unreserved stay: %s", buf_str(&b));
	buf_reset(&b);
	CHECK(dt_path(&b, "sandbox", "\xc3\xa9", NULL) == 0 && strcmp(b.data, "/sandbox/%C3%A9") == 0,
	      "utf-8: %s", buf_str(&b));
	buf_reset(&b);
	CHECK(dt_path_segment(&b, "..") == -EINVAL && dt_path_segment(&b, ".") == -EINVAL &&
		      dt_path_segment(&b, "") == -EINVAL && dt_path_segment(&b, NULL) == -EINVAL,
	      "dot segments and empty names must be refused");
	CHECK(b.len == 0, "refused segments append nothing");
	buf_append_str(&b, "/sandbox");
	dt_path_query(&b, "limit", "100");
	dt_path_query(&b, "labels", "{\"env\":\"dev & test\"}");
	dt_path_query(&b, "name", "a+b");
	CHECK(strcmp(b.data, "/sandbox?limit=100&labels=%7B%22env%22%3A%22dev%20%26%20test%22%7D"
			     "&name=a%2Bb") == 0,
	      "query: %s", b.data);
	buf_free(&b);
}

static void test_kv_to_json(void)
{
	struct dt_kv kv[] = {{"a", "1"}, {"b", "2"}, {"a", "3"}, {NULL, "x"}};
	cJSON *o = dt_kv_to_json(kv, 4);
	char *text = cJSON_PrintUnformatted(o);

	CHECK(strcmp(text, "{\"a\":\"3\",\"b\":\"2\"}") == 0, "kv json: %s", text);
	cJSON_free(text);
	cJSON_Delete(o);
}

int main(void)
{
	test_full_sandbox();
	test_partial_and_wrong_types();
	test_refused();
	test_many_labels();
	test_volume_and_snapshot();
	test_redaction();
	test_url_encoding();
	test_kv_to_json();
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("all DTO checks passed\n");
	return 0;
}
