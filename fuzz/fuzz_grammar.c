/*
 * libFuzzer target: the control-node grammar of quaverfs (src/fs/grammar.c):
 * a write's bytes split into words, each applied as a creation option, the
 * result checked and rendered. Properties: a rendered option set parses
 * back, and a word quoted by word_append_quoted splits back into itself.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quote_round_trip(const char *word)
{
	struct buf q = BUF_INIT;
	char **back = NULL;
	size_t n = 0;
	char msg[256];

	if (word_append_quoted(&q, word) < 0)
		goto out;
	if (words_split(q.data ? q.data : "", q.len, &back, &n, msg, sizeof(msg)) != 0)
		abort(); /* a quoted word must always split */
	if (word[0] && (n != 1 || strcmp(back[0], word)))
		abort(); /* and give the word back */
	words_free(back);
out:
	buf_free(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct create_opts o, copy;
	struct buf rendered = BUF_INIT;
	char **words = NULL;
	size_t n = 0;
	char msg[512];

	copts_init(&o);
	if (words_split((const char *)data, size, &words, &n, msg, sizeof(msg)) != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		(void)valid_object_name(words[i]);
		quote_round_trip(words[i]);
		copts_apply(&o, words[i], i % 2 == 0, msg, sizeof(msg));
	}
	copts_check(&o, msg, sizeof(msg));
	copts_init(&copy);
	if (copts_copy(&copy, &o) == 0)
		copts_clear(&copy);
	if (copts_render(&o, &rendered) == 0 && rendered.len) {
		/* What `cat defaults` shows must be accepted when written back. */
		struct create_opts again;
		char **w2 = NULL;
		size_t n2 = 0;

		copts_init(&again);
		if (words_split(rendered.data, rendered.len, &w2, &n2, msg, sizeof(msg)) != 0)
			abort();
		for (size_t i = 0; i < n2; i++)
			if (copts_apply(&again, w2[i], false, msg, sizeof(msg)) != 0)
				abort();
		words_free(w2);
		copts_clear(&again);
	}
out:
	buf_free(&rendered);
	if (words)
		words_free(words);
	copts_clear(&o);
	return 0;
}
