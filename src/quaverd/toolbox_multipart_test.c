/*
 * Unit and fuzz test of the streaming multipart reader (toolbox_multipart.c).
 *
 * The property: feeding a body in any pieces gives exactly what parsing it
 * whole gives (same parts, same bytes, same verdict), for valid bodies and
 * for random mutations of them. Built as a meson test; with
 * -DMP_LIBFUZZER the same check is a libFuzzer target
 * (clang -fsanitize=fuzzer,address -DMP_LIBFUZZER toolbox_multipart*.c).
 */
#include "toolbox_multipart.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct record {
	char *text;
	size_t len, cap;
};

static void rec_add(struct record *r, const void *data, size_t len)
{
	if (r->len + len + 1 > r->cap) {
		r->cap = (r->len + len + 1) * 2;
		r->text = realloc(r->text, r->cap);
		if (!r->text)
			abort();
	}
	memcpy(r->text + r->len, data, len);
	r->len += len;
	r->text[r->len] = '\0';
}

static int on_begin(void *ctx, const struct mp_part *p)
{
	char head[1600];
	int n = snprintf(head, sizeof(head), "<%s|%s%s|%s>", p->name, p->has_filename ? "F:" : "",
			 p->filename, p->content_type);

	rec_add(ctx, head, (size_t)n);
	return 0;
}

static int on_data(void *ctx, const void *data, size_t len)
{
	rec_add(ctx, data, len);
	return 0;
}

static int on_end(void *ctx)
{
	rec_add(ctx, "</>", 3);
	return 0;
}

static const struct mp_callbacks cb = {on_begin, on_data, on_end};

/* Parses @body cut at the offsets in @cuts (sorted); returns the verdict, fills @out. */
static int parse_split(const char *boundary, const char *body, size_t len, const size_t *cuts,
		       size_t ncuts, struct record *out)
{
	struct mp_reader *r = mp_new(boundary, &cb, out);
	size_t pos = 0;
	int rc = 0;

	if (!r)
		return -EINVAL;
	for (size_t i = 0; i <= ncuts && rc == 0; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		if (end < pos)
			end = pos;
		rc = mp_feed(r, body + pos, end - pos);
		pos = end;
	}
	if (rc == 0)
		rc = mp_finish(r);
	mp_free(r);
	return rc;
}

static int failures;

static void check_same(const char *boundary, const char *body, size_t len, const size_t *cuts,
		       size_t ncuts)
{
	struct record whole = {0}, split = {0};
	int a = mp_parse_mem(boundary, body, len, &cb, &whole);
	int b = parse_split(boundary, body, len, cuts, ncuts, &split);

	/* After an error the parts seen so far may differ in how much data came out. */
	if (a != b || (a == 0 && (whole.len != split.len ||
				  (whole.len && memcmp(whole.text, split.text, whole.len))))) {
		if (failures++ < 5)
			fprintf(stderr, "mismatch (whole %d, split %d) on a %zu-byte body\n", a, b,
				len);
	}
	free(whole.text);
	free(split.text);
}

static void expect(const char *what, const char *boundary, const char *body, int want_rc,
		   const char *want)
{
	struct record r = {0};
	int rc = mp_parse_mem(boundary, body, strlen(body), &cb, &r);

	if (rc != want_rc || (want && strcmp(r.text ? r.text : "", want))) {
		fprintf(stderr, "%s: got %d \"%s\", want %d \"%s\"\n", what, rc,
			r.text ? r.text : "", want_rc, want ? want : "");
		failures++;
	}
	free(r.text);
	/* Every two-piece split agrees with the whole parse. */
	for (size_t cut = 0; cut <= strlen(body); cut++)
		check_same(boundary, body, strlen(body), &cut, 1);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fuzz_one(const char *boundary, const char *data, size_t len)
{
	size_t cuts[16], n = rnd() % 16;

	for (size_t i = 0; i < n; i++)
		cuts[i] = len ? rnd() % (len + 1) : 0;
	for (size_t i = 1; i < n; i++) /* insertion sort */
		for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
			size_t t = cuts[j];
			cuts[j] = cuts[j - 1];
			cuts[j - 1] = t;
		}
	check_same(boundary, data, len, cuts, n);
}

#ifdef MP_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_one("XyZ", (const char *)data, size);
	if (failures)
		abort();
	return 0;
}
#else
int main(void)
{
	static const char *const seeds[] = {
	    "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XyZ--\r\n",
	    "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"files[0].path\"\r\n\r\n"
	    "/x\r\n--XyZ\r\nContent-Disposition: form-data; name=\"files[0].file\"; "
	    "filename=\"a\\\"b\"\r\nContent-Type: text/plain\r\n\r\n\r\n--XyZ-not\r\n--X\r\n"
	    "--XyZ--\r\nepilogue",
	    "--XyZ\r\n\r\nno headers\r\n--XyZ--",
	    "--XyZ  \t\r\nContent-Disposition: form-data; name=e; filename*=utf-8''%e2%82%ac\r\n"
	    "\r\n\r\n--XyZ--",
	};
	char body[4096];

	expect("simple", "XyZ", seeds[0], 0, "<a||>hello</>");
	expect("two parts", "XyZ", seeds[1], 0,
	       "<files[0].path||>/x</><files[0].file|F:a\"b|text/plain>\r\n--XyZ-not\r\n--X</>");
	expect("no headers", "XyZ", seeds[2], 0, "<||>no headers</>");
	expect("ext filename", "XyZ", seeds[3], 0, "<e|F:\xe2\x82\xac|></>");
	expect("truncated", "XyZ", "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhel",
	       -EBADMSG, NULL);
	expect("no boundary", "XyZ", "just text", -EBADMSG, NULL);
	/* A boundary string followed by other bytes is not a delimiter (as in Go). */
	expect("not a delimiter", "XyZ", "--XyZx\r\n\r\n--XyZ--", 0, "");
	expect("header without colon", "XyZ", "--XyZ\r\nbad header\r\n\r\nx\r\n--XyZ--", -EBADMSG,
	       NULL);
	expect("empty", "XyZ", "", -EBADMSG, NULL);

	{
		char hdr[MP_HEADERS_MAX + 200];
		size_t n = (size_t)snprintf(hdr, sizeof(hdr), "--XyZ\r\nX-Big: ");
		memset(hdr + n, 'a', MP_HEADERS_MAX + 10);
		snprintf(hdr + n + MP_HEADERS_MAX + 10, 64, "\r\n\r\nx\r\n--XyZ--");
		struct record r = {0};
		if (mp_parse_mem("XyZ", hdr, strlen(hdr), &cb, &r) != -EBADMSG) {
			fprintf(stderr, "an oversized header block was accepted\n");
			failures++;
		}
		free(r.text);
	}
	{
		char ct[128];
		if (mp_boundary("multipart/form-data; boundary=\"a b\"", ct, sizeof(ct)) ||
		    strcmp(ct, "a b") ||
		    mp_boundary("multipart/form-data; charset=x; BOUNDARY=q", ct, sizeof(ct)) ||
		    strcmp(ct, "q") || mp_boundary("text/plain; boundary=q", ct, sizeof(ct)) == 0 ||
		    mp_boundary("multipart/form-data", ct, sizeof(ct)) == 0) {
			fprintf(stderr, "mp_boundary\n");
			failures++;
		}
	}

	/* Mutations of the seeds, fed in random pieces. */
	for (int iter = 0; iter < 30000; iter++) {
		const char *seed = seeds[rnd() % (sizeof(seeds) / sizeof(seeds[0]))];
		size_t len = strlen(seed), edits = rnd() % 4;
		static const char alphabet[] = "-\r\nXyZ\"; =a";

		memcpy(body, seed, len);
		for (size_t e = 0; e < edits && len > 0; e++) {
			size_t at = rnd() % len;
			switch (rnd() % 3) {
			case 0:
				body[at] = alphabet[rnd() % (sizeof(alphabet) - 1)];
				break;
			case 1:
				len = at; /* truncate */
				break;
			default:
				if (len + 8 < sizeof(body)) {
					memmove(body + at + 7, body + at, len - at);
					memcpy(body + at, "\r\n--XyZ", 7);
					len += 7;
				}
				break;
			}
		}
		fuzz_one("XyZ", body, len);
	}
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("multipart: all checks passed\n");
	return 0;
}
#endif
