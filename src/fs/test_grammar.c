/* Unit tests of the control-file grammar: words, creation options, names. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "grammar.h"

static int failures;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);   \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static void test_words(void)
{
	static const char line[] =
		"create sandbox full env=\"GREETING=hello world\" label='note=two words' "
		"a\\ b \"q\\\"x\" ''\n";
	char **w = NULL, msg[128];
	size_t n = 0;

	CHECK(words_split(line, strlen(line), &w, &n, msg, sizeof(msg)) == 0);
	CHECK(n == 8);
	if (n == 8) {
		CHECK(strcmp(w[0], "create") == 0);
		CHECK(strcmp(w[3], "env=GREETING=hello world") == 0);
		CHECK(strcmp(w[4], "label=note=two words") == 0);
		CHECK(strcmp(w[5], "a b") == 0);
		CHECK(strcmp(w[6], "q\"x") == 0);
		CHECK(strcmp(w[7], "") == 0);
		CHECK(w[8] == NULL);
	}
	words_free(w);

	CHECK(words_split("a 'b", 4, &w, &n, msg, sizeof(msg)) == -EINVAL);
	CHECK(strstr(msg, "unterminated") != NULL);
	CHECK(words_split("a\0b", 3, &w, &n, msg, sizeof(msg)) == -EINVAL);
	CHECK(words_split("   \n", 4, &w, &n, msg, sizeof(msg)) == 0 && n == 0);
	words_free(w);
}

static void test_names(void)
{
	CHECK(valid_object_name("demo"));
	CHECK(valid_object_name("a.b_c-1"));
	CHECK(valid_object_name("9lives"));
	CHECK(!valid_object_name(""));
	CHECK(!valid_object_name("-lead"));
	CHECK(!valid_object_name("_under"));
	CHECK(!valid_object_name("has space"));
	CHECK(!valid_object_name("semi;colon"));
	CHECK(!valid_object_name("caf\xc3\xa9"));
	CHECK(!valid_object_name("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
}

static void test_options_round_trip(void)
{
	static const char *const words[] = {
		"language=typescript", "cpu=2",	   "memory=4",	     "disk=10",
		"autostop=30",	       "autoarchive=120", "autodelete=-1", "public=true",
		"user=alice",	       "volume=data1:/data:sub", "volume=v2:/w",
		"env=K=V",	       "env=GREETING=hello world", "label=team=core",
		"label=note=it's",
	};
	struct create_opts o, back;
	struct buf out = BUF_INIT, again = BUF_INIT;
	char **w = NULL, msg[256];
	size_t n = 0;

	copts_init(&o);
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		CHECK(copts_apply(&o, words[i], false, msg, sizeof(msg)) == 0);
	CHECK(copts_check(&o, msg, sizeof(msg)) == 0);
	CHECK(copts_render(&o, &out) == 0);
	CHECK(strstr(buf_str(&out), "env='GREETING=hello world'\n") != NULL);
	CHECK(strstr(buf_str(&out), "volume=data1:/data:sub\n") != NULL);

	/* What a read shows, written back, gives the same options. */
	copts_init(&back);
	CHECK(words_split(out.data, out.len, &w, &n, msg, sizeof(msg)) == 0);
	for (size_t i = 0; i < n; i++)
		CHECK(copts_apply(&back, w[i], true, msg, sizeof(msg)) == 0);
	CHECK(copts_render(&back, &again) == 0);
	CHECK(strcmp(buf_str(&out), buf_str(&again)) == 0);
	words_free(w);

	/* key= clears; the same env key replaces */
	CHECK(copts_apply(&back, "autostop=", true, msg, sizeof(msg)) == 0);
	CHECK(!back.autostop_set);
	CHECK(copts_apply(&back, "env=K=W", true, msg, sizeof(msg)) == 0);
	CHECK(back.nenv == 2);
	CHECK(copts_apply(&back, "env=", true, msg, sizeof(msg)) == 0 && back.nenv == 0);
	CHECK(copts_apply(&back, "cpu=", false, msg, sizeof(msg)) == -EINVAL);

	copts_clear(&o);
	copts_clear(&back);
	buf_free(&out);
	buf_free(&again);
}

static void test_bad_options(void)
{
	static const char *const bad[] = {
		"bogus=1",   "autostop=soon", "autostop=-5", "autostop=1.5", "language=cobol",
		"public=maybe", "volume=novolumeformat", "volume=v:relative", "cpu=lots",
		"cpu=0",     "env=1BAD=x",    "env=novalue", "label==x",     "noequals",
	};
	struct create_opts o;
	char msg[256];

	copts_init(&o);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		msg[0] = '\0';
		CHECK(copts_apply(&o, bad[i], true, msg, sizeof(msg)) == -EINVAL);
		CHECK(msg[0] != '\0');
	}
	CHECK(copts_apply(&o, "snapshot=s", false, msg, sizeof(msg)) == 0);
	CHECK(copts_apply(&o, "cpu=2", false, msg, sizeof(msg)) == 0);
	CHECK(copts_check(&o, msg, sizeof(msg)) == -EINVAL);
	copts_clear(&o);
}

int main(void)
{
	test_words();
	test_names();
	test_options_round_trip();
	test_bad_options();
	if (failures)
		fprintf(stderr, "%d failures\n", failures);
	return failures ? 1 : 0;
}
