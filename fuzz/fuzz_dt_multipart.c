/*
 * libFuzzer target: the client's multipart reader of bulk-download answers
 * (src/daytona/dt_multipart.c). The input's first line is the Content-Type
 * header, the rest the body; every part handed out must lie inside the body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dt_multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct bounds {
	const char *body;
	size_t len;
};

static int check_part(void *arg, const struct dt_multipart_part *part)
{
	const struct bounds *b = arg;

	if (part->len && (part->data < b->body || part->data + part->len > b->body + b->len))
		abort();
	/* ASan checks the whole range (memchr is intercepted). */
	if (part->len)
		(void)!memchr(part->data, 0x100 - 1, part->len);
	(void)strlen(part->name);
	(void)strlen(part->content_type);
	if (part->filename)
		(void)strlen(part->filename);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t ct_len = nl ? (size_t)(nl - data) : size;
	char *ct = malloc(ct_len + 1);
	struct bounds b;
	char *body;

	if (!ct)
		return 0;
	memcpy(ct, data, ct_len);
	ct[ct_len] = '\0';
	b.len = nl ? size - ct_len - 1 : 0;
	/* An exact-size copy: a read past the body's end is an ASan report. */
	body = malloc(b.len ? b.len : 1);
	if (body) {
		if (b.len)
			memcpy(body, nl + 1, b.len);
		b.body = body;
		dt_multipart_parse(ct, body, b.len, check_part, &b);
	}
	free(body);
	free(ct);
	return 0;
}
